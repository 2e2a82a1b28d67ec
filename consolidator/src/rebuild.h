// Rebuild: folds every source from position 0 into the target's rebuild slot (a fresh SQLite
// file or PostgreSQL schema), beside the live read model, until it has caught up. The
// Consolidator then pauses the live pipeline, lets the rebuild reach the live checkpoints (so
// the view readers see never goes back in time), and swaps the slots (Target::Swap).
//
// Progress counts events: those the rebuild has read (with or without a handler) against those
// the sources held when it began, so it reaches 1.0 exactly when the rebuild has read them all.
//
// Not thread-safe: driven by the Consolidator's supervisor thread; Progress() is safe from any.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "pipeline.h"
#include "stream_stats.h"
#include "target.h"

namespace sidelog::consolidator {

class Rebuild {
 public:
  Rebuild(const ConsolidatorConfig& config, Target* target);
  ~Rebuild();

  // Empties the rebuild slot, opens a pipeline on it and starts folding. `totals` are the
  // sources' counts now, the goal of the first phase. Errors as Pipeline::Open.
  Status Begin(const std::map<std::string, StreamStats>& totals);

  enum class Phase { kBuilding, kCaughtUp, kFailed };
  // kCaughtUp once every source has read its total and follows the live end of its stream;
  // kFailed when a handler error stopped a source (error() says where).
  Phase Check();
  const Status& error() const { return error_; }

  // Waits until every source's committed checkpoint is at or past `targets` (the paused live
  // pipeline's). Unavailable after `timeout`, or as soon as `give_up` returns true, naming the
  // sources that are behind.
  Status CatchUpTo(const std::map<std::string, Checkpoint>& targets,
                   std::chrono::milliseconds timeout, const std::function<bool()>& give_up);

  // Stops folding and closes the rebuild slot's connection (before a swap, or to give up).
  void Close();

  // {eventsDone, eventsTotal, progress} for /v1/status.
  Json Progress() const;

 private:
  const ConsolidatorConfig& config_;
  Target* target_;
  std::map<std::string, StreamStats> totals_;
  std::unique_ptr<Pipeline> pipeline_;
  Status error_;

  mutable std::mutex mu_;
  int64_t events_done_ = 0;
  bool by_position_ = false;  // JetStream sources: done and total count positions
  int64_t events_total_ = 0;
};

}  // namespace sidelog::consolidator
