// ConsolidatorReconciler: runs one sidelog-consolidator per Consolidator and reports on it.
//
//  - Check: the spec rendered as the consolidator's config must load (parameters, handler
//    events, SQL that tokenizes), and with a SQLite target its schema must apply and every
//    handler statement and query prepare on a scratch database (queries read-only). A spec
//    that fails is Ready=False reason InvalidSpec with the database's message and the
//    handler's event, and nothing is rolled out: the pods keep running the last good config.
//  - Objects (consolidator_workload.h): ConfigMap, StatefulSet (SQLite) or Deployment
//    (PostgreSQL), Service, written by server-side apply, owned by the Consolidator. An
//    object of the same name that the Consolidator does not own is left alone
//    (Ready=False, ResourceConflict).
//  - Status, refreshed every `status_period` (not on every watch event): Ready from the
//    workload's ready pods and the consolidator's own /v1/status (read through its Service);
//    lag {events, seconds}; sources [{stream, position, state}]; the pods' problems (a
//    missing Secret or key, a crash with its last log lines) in Ready's message.
//  - Rebuilds: a new value of the annotation sidelog.dev/rebuild asks the running
//    consolidator (POST /v1/rebuild); a change of sources, schema or handlers rolls the pods
//    to the new config, whose consolidator rebuilds by itself before it folds. Rebuilding and
//    status.rebuild {requestedAt, reason, state, progress} follow it.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>

#include "conditions.h"
#include "consolidator_workload.h"
#include "controller.h"
#include "event_recorder.h"
#include "informer.h"
#include "nats_identities.h"

namespace sidelog::op {

extern const ResourceType kConsolidators;
extern const ResourceType kStatefulSets;
extern const ResourceType kDeployments;
extern const ResourceType kServices;

// The objects the operator made for Consolidators: sidelog.dev/consolidator is set.
Selector ConsolidatorObjectSelector();

struct ConsolidatorOptions {
  ConsolidatorSettings workload;
  std::chrono::milliseconds status_period{5000};
  std::string scratch_dir = "/tmp";  // where the SQLite check makes its scratch database
  // The base URL of a consolidator's API given its Service object; "" when unknown. By
  // default http://<spec.clusterIP>:4390.
  std::function<std::string(const Json& service)> api_url;
  // Each Consolidator's own read-only NATS identity (null: none; workload.nats_identities
  // must be set with it).
  NatsIdentities* identities = nullptr;
};

class ConsolidatorReconciler : public Reconciler {
 public:
  // The informers hold the Consolidators and the objects made for them (ConsolidatorObject-
  // Selector): ConfigMaps, StatefulSets, Deployments, Services and pods.
  ConsolidatorReconciler(KubeApi* client, Informer* consolidators, Informer* config_maps,
                         Informer* stateful_sets, Informer* deployments, Informer* services,
                         Informer* pods, EventRecorder* recorder, ConsolidatorOptions options);

  Result<ReconcileResult> Reconcile(const std::string& key) override;

  // Brings a Consolidator back when one of its objects changes or goes.
  void WatchOwned(Controller* controller);

 private:
  struct Observed;
  // The check's verdict for this rendering (cached by the config's hash).
  Status Check(const Json& consolidator, const ConsolidatorWorkload& w);
  // Applies `object` unless the cached one (in `cache`) came from the same rendering. Conflict
  // when an object of that name exists that this Consolidator does not own.
  Status ApplyOwned(const Json& consolidator, const ResourceType& type, Informer* cache,
                    Json object);
  Observed Observe(const Json& consolidator, const ConsolidatorWorkload& w);
  Status WriteStatus(const Json& consolidator, const Json& status);

  KubeApi* client_;
  Informer* consolidators_;
  Informer* config_maps_;
  Informer* stateful_sets_;
  Informer* deployments_;
  Informer* services_;
  Informer* pods_;
  EventRecorder* recorder_;
  const ConsolidatorOptions options_;

  std::mutex mu_;
  std::map<std::string, std::pair<std::string, Status>> checked_;  // key -> (config hash, verdict)
};

}  // namespace sidelog::op
