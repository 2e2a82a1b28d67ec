// Pipeline: one Projection (one write connection to one slot) and a Follower per source,
// started and stopped together. The live read model is one pipeline; a rebuild is another, on
// the rebuild slot. Start/Stop from one owner thread; the getters are safe from any thread.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "follower.h"
#include "projection.h"

namespace sidelog::consolidator {

class Pipeline {
 public:
  // Opens the projection (see Projection::Open for the errors); nothing runs yet.
  static Result<std::unique_ptr<Pipeline>> Open(const ConsolidatorConfig& config,
                                                Projection::Connect connect, Metrics* metrics);
  ~Pipeline();

  void Start();
  // Stops every follower after its batch in flight. The connection stays open.
  void Stop();

  std::vector<FollowerSnapshot> Snapshots() const;
  // The committed checkpoint of every source, read from the database.
  Result<std::map<std::string, Checkpoint>> Checkpoints();

 private:
  Pipeline() = default;

  std::unique_ptr<Projection> projection_;
  std::vector<std::unique_ptr<Follower>> followers_;  // declared after: destroyed first
};

}  // namespace sidelog::consolidator
