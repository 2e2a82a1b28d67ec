// Consolidator: one read model, wired together: the target and its lock, the live pipeline
// (a projection and a follower per source), the named queries, rebuilds, status and metrics.
//
// A supervisor thread refreshes the sources' counts from the sidecar each second (lag, metrics)
// and drives rebuilds: build beside the live view, pause the live pipeline, let the rebuild
// reach its checkpoints, swap, restart live on the new content. Readers are held off only
// during the swap itself.
//
// Thread-safe: Start/Stop from the owner; everything else from any thread (HTTP handlers).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "config.h"
#include "pipeline.h"
#include "queries.h"
#include "rebuild.h"
#include "sidelog/metrics.h"
#include "stream_stats.h"
#include "target.h"

namespace sidelog::consolidator {

class Consolidator {
 public:
  explicit Consolidator(ConsolidatorConfig config);
  ~Consolidator();
  Consolidator(const Consolidator&) = delete;
  Consolidator& operator=(const Consolidator&) = delete;

  // Takes the target's lock (Conflict when another process holds it), applies the schema,
  // prepares every handler and query (Invalid with the config's file:line), and starts
  // following the sources. Unavailable when the database cannot be reached.
  Status Start();
  // Stops following (after the batches in flight) and the supervisor.
  void Stop();

  // Asks the supervisor to rebuild the read model. Conflict when a rebuild is under way.
  Status RequestRebuild();
  // Gives up the rebuild under way: the rebuild slot is emptied and the live view stays as it
  // was ("cancelled"). Conflict when no rebuild is under way.
  Status CancelRebuild();

  // Rebuilds without serving: for `sidelog-consolidator rebuild` when no consolidator runs.
  // Takes the target's lock, folds everything into the rebuild slot until caught up with the
  // sources, then swaps it in. `progress` gets the rebuild's progress about twice a second and
  // returns false to give up (Unavailable; the live view stays as it was).
  Status RebuildOffline(const std::function<bool(const Json&)>& progress);

  // /v1/status: per source position, lag (events, seconds), state and last error; rebuild.
  Json StatusJson() const;
  // The live pipeline is open and following.
  bool ready() const;

  const ConsolidatorConfig& config() const { return config_; }
  Queries& queries() { return *queries_; }
  Metrics& metrics() { return metrics_; }

 private:
  struct RebuildState {
    std::string state = "idle";  // idle, requested, building, swapping, done, failed, cancelled
    std::string requested_at, started_at, finished_at;
    std::string error;
    std::string detail;  // why a caught-up rebuild is not swapped in yet
    std::string reason;  // "projection changed" when the consolidator asked for it itself
    Json progress = Json::object();
  };

  // What the supervisor knows of a source's identity (StreamStats::identity).
  struct SourceCheck {
    bool loaded = false;   // `recorded` was read from the live slot
    std::string recorded;  // the identity recorded with the checkpoint ("" when none)
    Json reset;            // set once the source was found reset: what /v1/status shows
  };

  void Supervise();
  void RefreshStats();
  // Compares each source's identity and end with what the live checkpoint belongs to: starts
  // the followers of the sources that match, halts those that do not (SourceReset).
  void VerifySources(const std::map<std::string, StreamStats>& stats);
  void ResetSource(Pipeline& live, const std::string& stream, const std::string& why,
                   const StreamStats* stats, SourceCheck& check);
  // One step of a requested or running rebuild.
  void StepRebuild();
  // Pauses live, lets the rebuild reach it, swaps, restarts live.
  Status SwapIn();
  Status OpenLive();
  void SetRebuild(const std::function<void(RebuildState&)>& change);

  const ConsolidatorConfig config_;
  std::unique_ptr<Target> target_;
  Metrics metrics_;
  std::unique_ptr<Queries> queries_;

  mutable std::mutex live_mu_;  // guards the pointer; the pipeline is thread-safe
  std::unique_ptr<Pipeline> live_;

  std::unique_ptr<Rebuild> rebuild_;  // supervisor thread only
  mutable std::mutex state_mu_;
  RebuildState rebuild_state_;
  std::map<std::string, StreamStats> stats_;
  std::map<std::string, SourceCheck> checks_;  // under state_mu_; reset with the live slot
  std::atomic<bool> cancel_{false};            // a rebuild's cancellation was asked for
  // The live slot holds another projection (sources, schema or handlers changed): it is
  // served as it is, never folded, until a rebuild swaps the new one in.
  std::atomic<bool> frozen_{false};
  std::atomic<bool> started_{false};  // holds the lock and folds (else a standby)
  StreamStatsSource stats_source_{config_};
  std::string stats_error_;

  std::thread supervisor_;
  std::mutex wake_mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
};

}  // namespace sidelog::consolidator
