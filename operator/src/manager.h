// Manager: the controllers of one operator process and the informers they share, in the
// spirit of controller-runtime's manager.
//
//  - Informers are shared: InformerFor returns one informer per kind and selector, however
//    many controllers read or watch it, so each kind is listed and watched once.
//  - Controllers register before Start. Start starts every informer and, once all of them
//    have synced, every controller's workers: no reconcile ever reads a half-filled cache
//    (an EventService would find its streams missing).
//  - client() is the client reconcilers write with. It counts writes
//    (sidelog_operator_api_writes_total{verb,resource}) and hands each answer to the informer
//    of that kind (Informer::Observe), so reconcilers read their own writes.
//  - Ready() is true when every informer has synced and the controllers run.
//
// Leader election sits outside: the process starts a Manager when it becomes the leader.
// Thread-safe after Start; InformerFor and AddController are for the setup, before Start.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "controller.h"
#include "informer.h"
#include "kube_client.h"
#include "sidelog/metrics.h"

namespace sidelog::op {

class Manager {
 public:
  // Watches namespace `ns` (every namespace when empty) through `client`; `metrics` (not
  // null) receives the controllers' and informers' series.
  Manager(KubeApi* client, std::string ns, Metrics* metrics);
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // The informer of `type` objects that `selector` selects, made on first use: in the
  // manager's namespace, or in `ns` (for an object of the operator's own namespace, such as
  // the webhook's Secret, when the manager watches every namespace).
  Informer* InformerFor(const ResourceType& type, const Selector& selector = {});
  Informer* InformerFor(const ResourceType& type, const Selector& selector, const std::string& ns);
  // A controller for the kind of `type`, reconciling with `reconciler` (not owned), fed by
  // `informer` (by default the kind's informer without a selector).
  Controller* AddController(const ResourceType& type, Reconciler* reconciler,
                            ControllerOptions options, Informer* informer = nullptr);

  // The client to write with (see above).
  KubeApi* client();
  const std::string& ns() const { return ns_; }

  void Start();
  // Stops the controllers; the reconciles in flight finish.
  void StopControllers();
  // Stops the controllers, shuts the client down (a watch waits in a read until the server
  // speaks, or the client is shut down), then stops the informers.
  void Stop();
  bool Ready() const { return started_; }
  // Blocks until Ready() or `timeout`.
  bool WaitUntilReady(std::chrono::milliseconds timeout) const;

 private:
  class ObservingClient;

  KubeApi* client_;
  const std::string ns_;
  Metrics* metrics_;
  std::unique_ptr<ObservingClient> writer_;
  std::vector<std::unique_ptr<Informer>> informers_;
  std::vector<std::unique_ptr<Controller>> controllers_;
  std::thread starter_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> started_{false};
};

}  // namespace sidelog::op
