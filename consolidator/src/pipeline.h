// Pipeline: one Projection (one write connection to one slot) and a Follower per source,
// started and stopped together. The live read model is one pipeline; a rebuild is another, on
// the rebuild slot. Start/Stop from one owner thread; the getters are safe from any thread.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
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

  // Starts every follower.
  void Start();
  // Starts the follower of one source (when it does not run yet).
  void StartSource(const std::string& stream);
  // Stops one source's follower for good (Follower::Halt); Resume leaves it stopped.
  void HaltSource(const std::string& stream, const std::string& why);
  // Stops every follower after its batch in flight. The connection stays open.
  void Stop();
  // Starts again the followers that ran before Stop.
  void Resume();
  bool Running(const std::string& stream) const;

  Projection& projection() { return *projection_; }

  std::vector<FollowerSnapshot> Snapshots() const;
  // The committed checkpoint of every source, read from the database.
  Result<std::map<std::string, Checkpoint>> Checkpoints();

 private:
  Pipeline() = default;

  Follower* Find(const std::string& stream);

  std::unique_ptr<Projection> projection_;
  std::vector<std::unique_ptr<Follower>> followers_;  // declared after: destroyed first
  mutable std::mutex mu_;
  std::set<std::string> running_;  // under mu_: the sources started and not halted
};

}  // namespace sidelog::consolidator
