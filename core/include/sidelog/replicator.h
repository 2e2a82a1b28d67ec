// Replicator: the replicated mode of DESIGN.md ("Writes and consistency"). JetStream orders and
// stores commits and checks per-entity versions across all replicas; the local EventLog is a
// replica that serves reads.
//
//  - Append: plan against the local log (ids, deletion, version, rules), publish one message on
//    the entity subject with Nats-Msg-Id = commit id and, always,
//    Nats-Expected-Last-Subject-Sequence = the entity's last known position; after the PubAck,
//    store the commit at the acknowledged sequence, then answer.
//  - A 10071 conflict or a duplicate PubAck: catch up only that entity, then decide again by
//    the idempotency and version rules (replay, 409, or for "any" a retry).
//  - Following: one ordered consumer per stream from the watermark, storing whole commits in
//    order; the watermark moves with it.
//  - Stream identity: the JetStream stream's creation time is recorded; if it changes, or the
//    stream's last sequence falls below the watermark, writes answer 503 StreamReset.
//
// Thread-safe. Appends are pipelined: planned on the log's writer thread, published without
// waiting, stored when the PubAck arrives; no thread waits for a round trip, and appends to
// different entities are in flight together. A small pool of workers takes the rare slow paths
// (conflicts, duplicates) and waits that must not block an HTTP thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sidelog/config.h"
#include "sidelog/event_log.h"
#include "sidelog/jetstream.h"
#include "sidelog/metrics.h"

namespace sidelog {

struct ReplicatorOptions {
  std::string ns;
  NatsConfig nats;
  std::vector<std::string> streams;  // every stream the sidecar reads or writes
  int workers = 8;                   // threads for slow paths (conflicts) and posted waits
  int publish_timeout_ms = 5000;
  int startup_catchup_ms = 10000;  // readiness waits at most this long for the catch-up
  // Polled while Start waits for NATS and the catch-up: true ends the wait (the process is
  // being stopped).
  std::function<bool()> give_up_startup = [] { return false; };
};

struct StreamReplicationStatus {
  std::string name;
  std::string jetstream;  // SIDELOG_<ns>_<stream>
  int64_t last_seq = -1;  // JetStream's last sequence as last seen; -1 unknown
  int64_t watermark = 0;
  std::string state;  // "ok", "reset", "diverged", "missing", "unknown"
};

// The events of one JetStream message of `stream` (a CloudEvents batch: one commit), with their
// position (the message's sequence) and index. Invalid when the message is not a commit of that
// stream, or spans two entities.
Result<std::vector<StoredEvent>> DecodeCommit(const std::string& stream, const JetStreamMessage& m);

class Replicator {
 public:
  Replicator(EventLog* log, Metrics* metrics, ReplicatorOptions options);
  ~Replicator();

  // Connects (NATS may be down: the connection is retried in the background), checks stream
  // identities, starts the followers and waits, boundedly, for the startup catch-up (less when
  // options.give_up_startup says so).
  Status Start();
  void Stop();

  void AppendAsync(AppendRequest request, EventLog::AppendCallback done);
  // Runs `task` on a worker thread (for waits that must not block an HTTP thread).
  void Post(std::function<void()> task);

  // Catches the local log up to JetStream's last sequence of `stream` (consistency=strong).
  // Calls done(true) when reached, done(false) when NATS is unreachable or it took too long.
  void CatchUp(const std::string& stream, const std::function<void(bool)>& done);

  bool connected() const { return connected_.load(); }
  // Why NATS last refused or dropped the connection ("" when it has not).
  std::string nats_error() const { return js_ ? js_->last_error() : ""; }
  // The connection (after Start), for other users of JetStream in the sidecar.
  JetStream* jetstream() const { return js_.get(); }
  std::vector<StreamReplicationStatus> StreamStatus() const;

 private:
  // One append on its way through the pipeline.
  struct Op {
    std::shared_ptr<AppendRequest> request;
    EventLog::AppendCallback done;
    std::string key;  // stream '\0' entity
    bool started = false;
  };
  void Begin(const std::shared_ptr<Op>& op);
  void OnPlanned(const std::shared_ptr<Op>& op, Result<PlannedCommit> plan);
  void OnAcked(const std::shared_ptr<Op>& op, const std::shared_ptr<PlannedCommit>& planned,
               Result<PubAck> ack);
  void Finish(const std::shared_ptr<Op>& op, Result<AppendResult> result);
  Result<std::string> EncodeCommit(const AppendRequest& request, const PlannedCommit& plan) const;
  Result<AppendResult> AfterDiverged(AppendRequest& request, Result<AppendResult> stored);
  enum class AckNext { kStore, kFail, kCatchUp };
  AckNext Classify(const Result<PubAck>& ack, const AppendRequest& request, Status* failure);
  void CountPublish(const char* result);
  void WorkerLoop();
  // The synchronous path, on a worker: plan, publish, store, retrying after conflicts.
  Result<AppendResult> Append(AppendRequest& request);
  // Stores the entity's commits JetStream has after `after`.
  static bool LocalConflictMayBeStale(const Status& status, const AppendRequest& request);
  Status CatchUpEntity(const std::string& stream, const std::string& entity, int64_t after);
  Status CheckIdentity(const std::string& stream);
  void StartFollower(const std::string& stream);
  void MonitorLoop();

  EventLog* log_;
  Metrics* metrics_;
  ReplicatorOptions options_;
  std::unique_ptr<JetStream> js_;
  std::atomic<bool> connected_{false};
  std::atomic<bool> stopping_{false};

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // worker tasks
  bool draining_ = false;                    // workers finish the queue and exit
  // One publish in flight per entity on this sidecar: the rest wait here, in arrival order, so
  // replicas of one sidecar never race each other into conflicts.
  std::map<std::string, std::deque<std::shared_ptr<Op>>> entity_turns_;
  int in_flight_ = 0;  // entities with an append in flight
  std::condition_variable idle_cv_;
  std::vector<std::thread> workers_;
  std::thread monitor_;

  mutable std::mutex followers_mu_;
  std::map<std::string, std::unique_ptr<JetStreamFollower>> followers_;
  std::map<std::string, int64_t> last_seq_;     // by stream, from the monitor
  std::map<std::string, std::string> missing_;  // streams whose JetStream stream is absent
};

}  // namespace sidelog
