#include "consolidator_workload.h"

#include "nats_identities.h"
#include "sidecar_config.h"
#include "sidelog/event.h"

namespace sidelog::op {
namespace {

constexpr const char* kConfigDir = "/etc/sidelog/config";
constexpr const char* kDataDir = "/var/lib/sidelog";
constexpr const char* kConfigVolume = "config";
constexpr const char* kDataVolume = "data";
constexpr const char* kCredsVolume = "nats-creds";
constexpr const char* kIdentityVolume = "nats-identity";
constexpr const char* kTlsVolume = "nats-tls";
constexpr int kNonRoot = 65532;

Json Labels(const std::string& name) {
  return {{"app.kubernetes.io/name", "sidelog-consolidator"},
          {"app.kubernetes.io/instance", name},
          {"app.kubernetes.io/component", "consolidator"},
          {"app.kubernetes.io/managed-by", "sidelog-operator"},
          {"app.kubernetes.io/part-of", "sidelog"},
          {kConsolidatorLabel, name}};
}

Json Metadata(const Json& consolidator, const std::string& name) {
  const Json& meta = consolidator.at("metadata");
  return {{"name", name},
          {"namespace", meta.value("namespace", "")},
          {"labels", Labels(meta.value("name", ""))},
          {"ownerReferences", Json::array({ControllerReference(consolidator)})}};
}

Json Probe(const char* path, int period, int failures) {
  return {{"httpGet", {{"path", path}, {"port", "http"}}},
          {"periodSeconds", period},
          {"timeoutSeconds", 2},
          {"failureThreshold", failures}};
}

Json PodTemplate(const Json& consolidator, const ConsolidatorWorkload& w,
                 const ConsolidatorSettings& settings) {
  const Json& meta = consolidator.at("metadata");
  const std::string name = meta.value("name", "");
  const Json spec = consolidator.value("spec", Json::object());
  const bool sqlite = spec.value("target", Json::object()).contains("sqlite");

  Json mounts =
      Json::array({{{"name", kConfigVolume}, {"mountPath", kConfigDir}, {"readOnly", true}}});
  Json volumes = Json::array(
      {{{"name", kConfigVolume}, {"configMap", {{"name", ConsolidatorConfigMapName(name)}}}}});
  Json env = Json::array();
  if (sqlite) {
    mounts.push_back({{"name", kDataVolume}, {"mountPath", kDataDir}});
    env.push_back({{"name", "SQLITE_TMPDIR"}, {"value", kDataDir}});
  } else {
    const Json ref = spec["target"]["postgres"].value("connectionSecretRef", Json::object());
    env.push_back({{"name", kDatabaseEnv},
                   {"valueFrom",
                    {{"secretKeyRef",
                      {{"name", ref.value("name", "")}, {"key", ref.value("key", "uri")}}}}}});
  }
  auto secret = [&](const std::string& secret_name, const char* volume, const std::string& dir) {
    if (secret_name.empty()) return;
    mounts.push_back({{"name", volume}, {"mountPath", dir}, {"readOnly", true}});
    volumes.push_back({{"name", volume}, {"secret", {{"secretName", secret_name}}}});
  };
  if (settings.nats_identities) {
    secret(NatsIdentitySecret("Consolidator", meta.value("name", "")), kIdentityVolume,
           settings.nats_identity_dir);
  } else {
    secret(settings.nats_creds_secret, kCredsVolume, settings.nats_creds_dir);
  }
  secret(settings.nats_tls_secret, kTlsVolume, settings.nats_tls_dir);

  std::string image = spec.value("image", "");
  if (image.empty()) image = settings.image;
  Json container = {
      {"name", kConsolidatorContainer},
      {"image", image},
      {"imagePullPolicy", "IfNotPresent"},
      {"args", {"--config", std::string(kConfigDir) + "/" + kConsolidatorConfigKey}},
      {"env", env},
      {"ports",
       Json::array(
           {{{"name", "http"}, {"containerPort", kConsolidatorPort}, {"protocol", "TCP"}}})},
      // Ready once the live view is open (a standby replica never is, so the Service sends
      // queries to the one that folds); alive as long as its HTTP listener answers.
      {"readinessProbe", Probe("/readyz", 5, 2)},
      {"livenessProbe", Probe("/livez", 10, 6)},
      {"securityContext",
       {{"runAsNonRoot", true},
        {"runAsUser", kNonRoot},
        {"runAsGroup", kNonRoot},
        {"allowPrivilegeEscalation", false},
        {"readOnlyRootFilesystem", true},
        {"capabilities", {{"drop", {"ALL"}}}},
        {"seccompProfile", {{"type", "RuntimeDefault"}}}}},
      {"volumeMounts", mounts},
      {"terminationMessagePolicy", "FallbackToLogsOnError"},
  };
  if (spec.contains("resources") && spec["resources"].is_object() && !spec["resources"].empty()) {
    container["resources"] = spec["resources"];
  }
  Json labels = Labels(name);
  return {
      {"metadata", {{"labels", labels}, {"annotations", {{kConfigHashAnnotation, w.config_hash}}}}},
      {"spec",
       {{"containers", Json::array({container})},
        {"volumes", volumes},
        {"enableServiceLinks", false},
        {"automountServiceAccountToken", false},
        // SIGTERM: the batches in flight commit, then the process exits.
        {"terminationGracePeriodSeconds", 30},
        {"securityContext",
         {{"runAsNonRoot", true},
          {"runAsUser", kNonRoot},
          {"runAsGroup", kNonRoot},
          {"fsGroup", kNonRoot},
          {"fsGroupChangePolicy", "OnRootMismatch"},
          {"seccompProfile", {{"type", "RuntimeDefault"}}}}}}}};
}

}  // namespace

std::string ConsolidatorConfigMapName(const std::string& name) { return name + "-consolidator"; }

std::string ProjectionHash(const Json& spec) {
  const Json parts = {{"sources", spec.value("sources", Json::array())},
                      {"schema", spec.value("schema", "")},
                      {"handlers", spec.value("handlers", Json::array())}};
  return Sha256Hex(parts.dump());
}

SpecChange ClassifySpecChange(const Json& before, const Json& after) {
  if (ProjectionHash(before) != ProjectionHash(after)) return SpecChange::kRebuild;
  if (before != after) return SpecChange::kRestart;
  return SpecChange::kNone;
}

const char* SpecChangeName(SpecChange change) {
  switch (change) {
    case SpecChange::kNone:
      return "none";
    case SpecChange::kRestart:
      return "restart";
    case SpecChange::kRebuild:
      return "rebuild";
  }
  return "none";
}

std::string RenderConsolidatorConfig(const Json& consolidator,
                                     const ConsolidatorSettings& settings) {
  const Json& meta = consolidator.at("metadata");
  const std::string name = meta.value("name", "");
  const std::string ns = meta.value("namespace", "");
  const Json spec = consolidator.value("spec", Json::object());
  const Json target = spec.value("target", Json::object());
  // nlohmann's objects keep keys sorted, so the text is a function of the content alone.
  Json config = {
      {"name", name},
      {"namespace", ns},
      {"listen", "0.0.0.0:" + std::to_string(kConsolidatorPort)},
      {"delivery", spec.value("delivery", "pull")},
      {"sources", spec.value("sources", Json::array())},
      {"schema", spec.value("schema", "")},
      {"handlers", spec.value("handlers", Json::array())},
      {"replicas", spec.value("replicas", 1)},
  };
  if (spec.contains("queries") && !spec["queries"].empty()) config["queries"] = spec["queries"];
  const Json batch = spec.value("batch", Json::object());
  config["batch"] = {{"maxEvents", batch.value("maxEvents", 500)},
                     {"maxDelay", batch.value("maxDelay", "1s")}};
  if (target.contains("sqlite")) {
    config["target"] = {{"sqlite", {{"path", std::string(kDataDir) + "/" + name + ".db"}}}};
  } else {
    config["target"] = {{"postgres", {{"connectionEnv", kDatabaseEnv}}}};
  }
  NatsConfig nats = settings.nats;
  if (settings.nats_identities) {
    nats.creds_file = settings.nats_identity_dir + "/" + kNatsCredsKey;
  }
  config["nats"] = NatsSection(nats);
  return "# Rendered by sidelog-operator from Consolidator " + ns + "/" + name +
         ". Edits are overwritten.\n" + ToYaml(config);
}

ConsolidatorWorkload RenderConsolidator(const Json& consolidator,
                                        const ConsolidatorSettings& settings) {
  const Json& meta = consolidator.at("metadata");
  const std::string name = meta.value("name", "");
  const Json spec = consolidator.value("spec", Json::object());
  const Json target = spec.value("target", Json::object());
  ConsolidatorWorkload w;
  w.yaml = RenderConsolidatorConfig(consolidator, settings);
  w.projection_hash = ProjectionHash(spec);

  // The pods restart when what they run changes: the config, and the pod-level parts of the
  // spec (image, resources, the connection Secret).
  const Json pod_inputs = {{"config", w.yaml},
                           {"image", spec.value("image", settings.image)},
                           {"resources", spec.value("resources", Json::object())},
                           {"target", target}};
  w.config_hash = Sha256Hex(pod_inputs.dump());

  w.config_map = {{"apiVersion", "v1"},
                  {"kind", "ConfigMap"},
                  {"metadata", Metadata(consolidator, ConsolidatorConfigMapName(name))},
                  {"data", {{kConsolidatorConfigKey, w.yaml}}}};
  w.config_map["metadata"]["annotations"] = {{kConfigHashAnnotation, w.config_hash}};

  const Json selector = {{"matchLabels", {{kConsolidatorLabel, name}}}};
  const Json pod = PodTemplate(consolidator, w, settings);
  if (target.contains("sqlite")) {
    const Json& sqlite = target["sqlite"];
    Json claim = {{"accessModes", {"ReadWriteOnce"}},
                  {"resources", {{"requests", {{"storage", sqlite.value("size", Json("1Gi"))}}}}}};
    if (sqlite.contains("storageClassName")) claim["storageClassName"] = sqlite["storageClassName"];
    w.workload = {
        {"apiVersion", "apps/v1"},
        {"kind", "StatefulSet"},
        {"metadata", Metadata(consolidator, name)},
        {"spec",
         {{"replicas", 1},
          {"serviceName", name},
          {"selector", selector},
          {"template", pod},
          // Kubernetes' default, written out: the claim, and the read model on it, outlive the
          // StatefulSet; deleting the Consolidator leaves the PVC data-<name>-0 to delete.
          {"persistentVolumeClaimRetentionPolicy",
           {{"whenDeleted", "Retain"}, {"whenScaled", "Retain"}}},
          {"volumeClaimTemplates",
           Json::array({{{"apiVersion", "v1"},
                         {"kind", "PersistentVolumeClaim"},
                         {"metadata", {{"name", kDataVolume}, {"labels", Labels(name)}}},
                         {"spec", claim}}})}}}};
  } else {
    w.workload = {{"apiVersion", "apps/v1"},
                  {"kind", "Deployment"},
                  {"metadata", Metadata(consolidator, name)},
                  {"spec",
                   {{"replicas", spec.value("replicas", 1)},
                    {"selector", selector},
                    {"template", pod},
                    // A standby is never ready, so a rolling update would wait for ever
                    // for a new pod to be: the old pods go first, then the new ones start
                    // (one takes the lock, the others stand by).
                    {"strategy", {{"type", "Recreate"}}}}}};
  }
  w.service = {{"apiVersion", "v1"},
               {"kind", "Service"},
               {"metadata", Metadata(consolidator, name)},
               {"spec",
                {{"type", "ClusterIP"},
                 {"selector", {{kConsolidatorLabel, name}}},
                 {"ports", Json::array({{{"name", "http"},
                                         {"port", kConsolidatorPort},
                                         {"targetPort", "http"},
                                         {"protocol", "TCP"}}})}}}};
  return w;
}

}  // namespace sidelog::op
