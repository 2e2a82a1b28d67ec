// Controller: the loop that drives one Reconciler, for one kind. Changes to that kind (For)
// enqueue the object's key, except updates of status alone (ChangesMoreThanStatus), so that a
// reconciler's own status writes and live counters never feed back into reconciles. Changes
// to other kinds (Watches) are mapped to keys by a function: the owner of a ConfigMap, the
// services that list a stream. N workers take keys from a WorkQueue and reconcile them; a
// failed reconcile is retried with the queue's backoff; every key is enqueued again each
// resync period, so drift outside Kubernetes (a JetStream stream edited by hand) is repaired,
// and status counters refreshed, within one period.
//
// Metrics: sidelog_operator_reconciles_total{kind,result}, _reconcile_duration_seconds{kind},
// _queue_depth{kind}.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "informer.h"
#include "work_queue.h"

namespace sidelog::op {

struct ReconcileResult {
  // > 0: reconcile this key again after this delay (a periodic status refresh, or a wait).
  std::chrono::milliseconds requeue_after{0};
};

// One reconciler per kind. Reconcile must be level-triggered and idempotent: read the desired
// state (the cached object), read the actual state, converge, write status. An error status
// retries the key with backoff (an Unavailable one with retry_after_seconds waits at least
// that long).
class Reconciler {
 public:
  virtual ~Reconciler() = default;
  virtual Result<ReconcileResult> Reconcile(const std::string& key) = 0;
};

struct ControllerOptions {
  int workers = 2;
  std::chrono::milliseconds resync_period{30000};
  WorkQueueOptions queue;
};

class Controller {
 public:
  // Maps a change of another kind to the keys ("namespace/name") of this kind that care.
  using Mapper = std::function<std::vector<std::string>(const ObjectEvent& event)>;

  // `informer` holds the kind it reconciles (shared with others; its owner starts it).
  Controller(std::string kind, Informer* informer, Reconciler* reconciler, Metrics* metrics,
             ControllerOptions options);
  ~Controller();

  // Changes of `informer`'s objects enqueue the keys `map` returns. Before Start.
  void Watches(Informer* informer, Mapper map);

  // Starts the workers and the resync loop. Informers are started by their owner.
  void Start();
  void Stop();
  void Enqueue(const std::string& key) { queue_.Add(key); }
  // Every object of the kind (after an outage of something they all depend on).
  void EnqueueAll();
  const std::string& kind() const { return kind_; }
  WorkQueue& queue() { return queue_; }

 private:
  void Work();
  void Resync();

  const std::string kind_;
  Informer* informer_;
  Reconciler* reconciler_;
  Metrics* metrics_;
  const ControllerOptions options_;
  WorkQueue queue_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
};

}  // namespace sidelog::op
