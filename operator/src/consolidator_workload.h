// What the operator runs for one Consolidator: the config sidelog-consolidator reads, and the
// objects that run it. Pure functions of the resource and the operator's settings, so a
// rendering is reproducible and its hashes change only when its content does.
//
//  - ConfigMap <name>-consolidator: consolidator.yaml, the CR's spec as the process reads it
//    (docs/consolidator.md), with the operator's NATS settings, the listener on 0.0.0.0:4390
//    and the target's location. A PostgreSQL connection string never goes in it: the container
//    reads it from the env var SIDELOG_CONSOLIDATOR_DATABASE, set from connectionSecretRef.
//  - The workload <name>: a StatefulSet of 1 with the volume claim template "data" sized by
//    target.sqlite.size (the SQLite file at /var/lib/sidelog/<name>.db), or a Deployment of
//    `replicas` for PostgreSQL (standbys wait on the consolidator's advisory lock). Its pod
//    template carries the config hash, so a config change rolls the pods.
//  - Service <name>: the query and status API on port 4390 (named http).
// Everything is owned by the Consolidator (a controller reference), labelled
// app.kubernetes.io/managed-by=sidelog-operator and sidelog.dev/consolidator=<name>.
#pragma once

#include <string>

#include "kube_client.h"
#include "nats_identities.h"
#include "sidelog/config.h"

namespace sidelog::op {

inline constexpr const char* kConsolidatorLabel = "sidelog.dev/consolidator";
inline constexpr const char* kRebuildAnnotation = "sidelog.dev/rebuild";
inline constexpr const char* kConsolidatorConfigKey = "consolidator.yaml";
inline constexpr const char* kConsolidatorContainer = "consolidator";
inline constexpr const char* kDatabaseEnv = "SIDELOG_CONSOLIDATOR_DATABASE";
inline constexpr int kConsolidatorPort = 4390;

struct ConsolidatorSettings {
  std::string image;  // when spec.image is unset (--consolidator-image)
  // The operator's NATS: url, credsFile and tls paths are rendered; the Secrets named here (in
  // the Consolidator's namespace) are mounted at those paths' directories.
  NatsConfig nats;
  std::string nats_creds_secret;
  std::string nats_tls_secret;
  std::string nats_creds_dir = "/etc/sidelog/nats/creds";
  std::string nats_tls_dir = "/etc/sidelog/nats/tls";
  // Each Consolidator's own NATS identity (docs/security.md): its Secret
  // sidelog-nats-consolidator-<name> at nats_identity_dir, instead of nats_creds_secret.
  bool nats_identities = false;
  std::string nats_identity_dir = kNatsIdentityDir;
};

// The objects of one rendering.
struct ConsolidatorWorkload {
  std::string yaml;             // the config
  std::string config_hash;      // of the config: the pod template's sidelog.dev/config-hash
  std::string projection_hash;  // of sources, schema and handlers: a change needs a rebuild
  Json config_map;
  Json workload;  // a StatefulSet or a Deployment
  Json service;
  bool stateful() const { return workload.value("kind", "") == "StatefulSet"; }
};

ConsolidatorWorkload RenderConsolidator(const Json& consolidator,
                                        const ConsolidatorSettings& settings);

// The config's YAML alone.
std::string RenderConsolidatorConfig(const Json& consolidator,
                                     const ConsolidatorSettings& settings);

// What a spec change does to a running consolidator: nothing (status only), a restart with
// the new config (queries, batch, delivery, image, resources, replicas), or a rebuild (sources,
// schema or handlers: the new handlers must not run on tables the old ones built).
enum class SpecChange { kNone, kRestart, kRebuild };
SpecChange ClassifySpecChange(const Json& before, const Json& after);
const char* SpecChangeName(SpecChange change);

// The hash of the parts of a spec that a rebuild depends on.
std::string ProjectionHash(const Json& spec);

// "<name>-consolidator".
std::string ConsolidatorConfigMapName(const std::string& name);

}  // namespace sidelog::op
