// EventServiceReconciler: resolves each EventService's streams and renders its sidecar config.
//
//  - Dependencies: produces and consumes are resolved against the namespace's EventStreams
//    and the other EventServices (DependencyGraph). DependenciesResolved is False with reason
//    StreamNotFound (every missing name listed), ProducerConflict (a Single-producer stream
//    that an older service keeps, named), or CycleDetected (only with cycles denied). With
//    cycles warned about, the condition stays True, status.cycles lists them and a Warning
//    Event is recorded when they change.
//  - status.dependencies (the services this one consumes from, through which streams) and
//    status.dependents (the reverse) follow changes of other EventServices and of
//    EventStreams without an edit to this one: the controller maps those changes here.
//  - Sidecar config: the YAML that sidelog-sidecar reads, with each resolved stream's folding
//    rules copied from its EventStream, in the ConfigMap sidelog-<service> (owned by the
//    EventService, written by server-side apply, content hash in sidelog.dev/config-hash and
//    in status.sidecarConfig). A stream that is not resolved is left out, never half
//    rendered.
//  - status.injectedPods: the service's pods that run with the injected sidecar (Running,
//    annotated sidelog.dev/injected, labelled sidelog.dev/service=<name>, not being deleted),
//    kept current by a watch of the pods labelled for injection.
//  - NATS identity (with identities on): the Secret sidelog-nats-<service> with credentials
//    whose permissions follow the rendered streams (NatsIdentities); revoked when the service
//    is deleted.
//  - Ready = the config is rendered and the dependencies are resolved. observedGeneration is
//    on status and on every condition.
#pragma once

#include "conditions.h"
#include "controller.h"
#include "dependency_graph.h"
#include "event_recorder.h"
#include "informer.h"
#include "nats_identities.h"
#include "sidecar_config.h"

namespace sidelog::op {

extern const ResourceType kConfigMaps;
extern const ResourceType kPods;

// The label selector of the pods the webhook injects: sidelog.dev/inject=true.
Selector InjectedPodSelector();

struct EventServiceOptions {
  CyclePolicy cycles = CyclePolicy::kWarn;
  SidecarSettings sidecar;
  // Each service's own NATS identity (null: none).
  NatsIdentities* identities = nullptr;
};

class EventServiceReconciler : public Reconciler {
 public:
  // `client` is the Manager's (writes are observed by the informers). The informers hold the
  // EventServices, the EventStreams, the operator's ConfigMaps and the pods labelled for
  // injection (`pods` may be null: injectedPods is then not written).
  EventServiceReconciler(KubeApi* client, Informer* services, Informer* streams,
                         Informer* config_maps, Informer* pods, EventRecorder* recorder,
                         EventServiceOptions options);

  Result<ReconcileResult> Reconcile(const std::string& key) override;

  // Registers the mappings that bring a service back when something it depends on changes:
  // an EventStream it lists, another EventService of its namespace, its ConfigMap, one of its
  // pods.
  void WatchDependencies(Controller* controller);

 private:
  struct Resolved;
  Resolved Resolve(const Json& service, const DependencyGraph& graph) const;
  // Applies the ConfigMap unless the cached one already holds `config_map`'s content.
  Status ApplyConfigMap(const Json& config_map);
  Status WriteStatus(const Json& service, const Resolved& r);
  int64_t InjectedPods(const std::string& ns, const std::string& service) const;

  KubeApi* client_;
  Informer* services_;
  Informer* streams_;
  Informer* config_maps_;
  Informer* pods_;
  EventRecorder* recorder_;
  const EventServiceOptions options_;
};

}  // namespace sidelog::op
