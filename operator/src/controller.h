// Controller: the loop that drives one Reconciler. Its informer's changes enqueue keys; N
// workers take keys from a WorkQueue and reconcile them; a failed reconcile is retried with
// the queue's backoff; every key is enqueued again each resync period, so drift outside
// Kubernetes (a JetStream stream edited by hand) is repaired within one period.
//
// Metrics: sidelog_operator_reconciles_total{kind,result}, _reconcile_duration_seconds{kind},
// _queue_depth{kind}.
#pragma once

#include <atomic>
#include <chrono>
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
  Controller(std::string kind, Informer* informer, Reconciler* reconciler, Metrics* metrics,
             ControllerOptions options);
  ~Controller();

  // Starts the workers and the resync loop. The informer is started by its owner.
  void Start();
  void Stop();
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
