// Follower: keeps one source stream folded into a Projection. Its StreamReader fills a queue
// with the events after the source's checkpoint; the follower's thread takes them in batches
// (up to maxEvents, waiting at most maxDelay for a batch to fill) and applies each batch with
// its checkpoint in one transaction. Sources are independent: each keeps its own order.
//
// When a batch fails (a handler error with onError: stop, or a transient database error) the
// follower stops reading, waits (1 s, doubling to 60 s), reloads the checkpoint from the
// database, the source of truth, and starts again from there. So fixing the data resumes at
// the failing event (fixing a handler takes a restart, which rebuilds: Consolidator::Start).
//
// Start/Stop from one owner thread; Snapshot() is safe from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "config.h"
#include "event_queue.h"
#include "projection.h"
#include "sidelog/metrics.h"
#include "source_reader.h"

namespace sidelog::consolidator {

struct FollowerSnapshot {
  std::string stream;
  Checkpoint checkpoint;                    // as last committed
  std::string state;                        // starting, catching-up, following, failing, reset
  std::string error;                        // the last error, "" when healthy
  std::optional<StoredEvent> failed_event;  // where a handler error stopped the source
  std::string reader_error;                 // the reader's last failure to reach the sidecar
  TimeMicros oldest_pending = 0;            // time of the oldest event read but not yet committed
  bool idle = false;                        // following, nothing queued, nothing being applied
  int64_t handled = 0, skipped = 0, dead_lettered = 0, batches = 0;  // since Start
};

class Follower {
 public:
  // `metrics` may be null (a rebuild does not report per-batch metrics).
  Follower(const ConsolidatorConfig& config, const SourceConfig& source, Projection* projection,
           Metrics* metrics);
  ~Follower();
  Follower(const Follower&) = delete;
  Follower& operator=(const Follower&) = delete;

  void Start();
  // Stops after the batch in flight, if any, commits or fails. Returns when stopped.
  void Stop();
  // Stops for good: the source is not the stream the checkpoint belongs to. The snapshot says
  // state "reset" with `why` as the error until the follower is started again.
  void Halt(const std::string& why);

  FollowerSnapshot Snapshot() const;
  const std::string& stream() const { return source_.stream; }

 private:
  void Run();
  // Applies batches until an error (returned) or Stop.
  Status Fold(Checkpoint checkpoint);
  void Wait(std::chrono::seconds delay);
  // Counts a batch's outcome in the metrics.
  void Record(const ApplyResult& r, double seconds);
  bool stopping() const;

  const ConsolidatorConfig& config_;
  const SourceConfig& source_;
  Projection* projection_;
  Metrics* metrics_;
  EventQueue queue_;
  std::unique_ptr<SourceReader> reader_;
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool checkpoint_loaded_ = false;  // under mu_
  bool halted_ = false;             // under mu_
  FollowerSnapshot snapshot_;
};

}  // namespace sidelog::consolidator
