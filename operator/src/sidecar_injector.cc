#include "sidecar_injector.h"

#include <algorithm>
#include <set>

#include "conditions.h"
#include "nats_identities.h"
#include "sidecar_config.h"
#include "sidelog/yaml.h"

namespace sidelog::op {

namespace {

constexpr const char* kConfigVolume = "sidelog-config";
constexpr const char* kDataVolume = "sidelog-data";
constexpr const char* kCredsVolume = "sidelog-nats-creds";
constexpr const char* kTlsVolume = "sidelog-nats-tls";
constexpr const char* kIdentityVolume = "sidelog-nats-identity";
constexpr const char* kConfigDir = "/etc/sidelog/config";
constexpr const char* kDataDir = "/var/lib/sidelog";
constexpr int kSidecarUser = 65532;

AdmissionDecision Deny(const std::string& message) {
  AdmissionDecision d;
  d.allowed = false;
  d.message = message;
  return d;
}

// The object at `pointer`, or an empty object. (nlohmann's value() with a pointer and a JSON
// default picks the wrong overload.)
Json ObjectAt(const Json& j, const char* pointer) {
  Json::json_pointer p(pointer);
  if (!j.contains(p) || !j.at(p).is_object()) return Json::object();
  return j.at(p);
}

std::string NameOf(const Json& object) {
  return object.value("/metadata/name"_json_pointer, std::string());
}

bool HasEnv(const Json& container, const std::string& name) {
  for (const auto& e : container.value("env", Json::array())) {
    if (e.value("name", "") == name) return true;
  }
  return false;
}

// Ops that set `entries` in the string map at `path` (e.g. /metadata/labels) of `pod`: the
// whole map when the pod has none, else each entry that differs.
void SetMapEntries(Json& patch, const Json& pod, const std::string& path, const Json& entries) {
  Json::json_pointer pointer(path);
  if (!pod.contains(pointer) || !pod.at(pointer).is_object()) {
    patch.push_back({{"op", "add"}, {"path", path}, {"value", entries}});
    return;
  }
  const Json& map = pod.at(pointer);
  for (const auto& [key, value] : entries.items()) {
    if (map.contains(key) && map[key] == value) continue;
    patch.push_back({{"op", map.contains(key) ? "replace" : "add"},
                     {"path", path + "/" + EscapePointerToken(key)},
                     {"value", value}});
  }
}

// Ops that give SIDELOG_URL to every container of `list` (at `path`) that has no such
// variable. `skip` names a container to leave alone (the sidecar).
void AddUrl(Json& patch, const Json& containers, const std::string& path, const std::string& url,
            const std::string& skip = "") {
  for (size_t i = 0; i < containers.size(); ++i) {
    const Json& c = containers[i];
    if ((!skip.empty() && c.value("name", "") == skip) || HasEnv(c, "SIDELOG_URL")) continue;
    const std::string at = path + "/" + std::to_string(i) + "/env";
    Json var = {{"name", "SIDELOG_URL"}, {"value", url}};
    if (c.contains("env") && c["env"].is_array()) {
      patch.push_back({{"op", "add"}, {"path", at + "/-"}, {"value", var}});
    } else {
      patch.push_back({{"op", "add"}, {"path", at}, {"value", Json::array({var})}});
    }
  }
}

// Appends `items` to the array at `path`, creating it when absent.
void Append(Json& patch, const Json& pod, const std::string& path, const Json& items) {
  Json::json_pointer pointer(path);
  if (pod.contains(pointer) && pod.at(pointer).is_array()) {
    for (const auto& item : items) {
      patch.push_back({{"op", "add"}, {"path", path + "/-"}, {"value", item}});
    }
  } else {
    patch.push_back({{"op", "add"}, {"path", path}, {"value", items}});
  }
}

Json Probe(const char* path, int period, int failures) {
  return {{"httpGet", {{"path", path}, {"port", kSidecarHealthPort}}},
          {"periodSeconds", period},
          {"timeoutSeconds", 2},
          {"failureThreshold", failures}};
}

Json SidecarContainer(const Json& sidecar, const InjectorOptions& options) {
  Json mounts = Json::array({
      {{"name", kConfigVolume}, {"mountPath", kConfigDir}, {"readOnly", true}},
      {{"name", kDataVolume}, {"mountPath", kDataDir}},
  });
  if (options.nats_identities) {
    mounts.push_back(
        {{"name", kIdentityVolume}, {"mountPath", options.nats_identity_dir}, {"readOnly", true}});
  } else if (!options.nats_creds_secret.empty()) {
    mounts.push_back(
        {{"name", kCredsVolume}, {"mountPath", options.nats_creds_dir}, {"readOnly", true}});
  }
  if (!options.nats_tls_secret.empty()) {
    mounts.push_back(
        {{"name", kTlsVolume}, {"mountPath", options.nats_tls_dir}, {"readOnly", true}});
  }
  std::string image = sidecar.value("image", "");
  if (image.empty()) image = options.sidecar_image;
  Json c = {
      {"name", kSidecarContainer},
      {"image", image},
      {"imagePullPolicy", "IfNotPresent"},
      {"restartPolicy", "Always"},
      {"args", {"--config", std::string(kConfigDir) + "/" + kSidecarConfigKey}},
      {"env", Json::array({{{"name", "SQLITE_TMPDIR"}, {"value", kDataDir}}})},
      {"ports", Json::array({{{"name", "sidelog-health"},
                              {"containerPort", kSidecarHealthPort},
                              {"protocol", "TCP"}}})},
      // The app containers start once this passes: the sidecar has opened its log and, when
      // replicated, caught up enough to serve.
      {"startupProbe", Probe("/readyz", 1, 120)},
      {"readinessProbe", Probe("/readyz", 5, 3)},
      {"livenessProbe", Probe("/livez", 10, 3)},
      {"securityContext",
       {{"runAsNonRoot", true},
        {"runAsUser", kSidecarUser},
        {"runAsGroup", kSidecarUser},
        {"allowPrivilegeEscalation", false},
        {"readOnlyRootFilesystem", true},
        {"capabilities", {{"drop", {"ALL"}}}},
        {"seccompProfile", {{"type", "RuntimeDefault"}}}}},
      {"volumeMounts", mounts},
      {"terminationMessagePolicy", "FallbackToLogsOnError"},
  };
  if (sidecar.contains("resources") && sidecar["resources"].is_object() &&
      !sidecar["resources"].empty()) {
    c["resources"] = sidecar["resources"];
  }
  return c;
}

Json Volumes(const Json& sidecar, const std::string& service, const std::string& config_map,
             const InjectorOptions& options) {
  Json storage = sidecar.value("storage", Json::object());
  Json data = {{"name", kDataVolume}};
  if (storage.value("type", "emptyDir") == "volumeClaim") {
    Json spec = {{"accessModes", {"ReadWriteOnce"}},
                 {"resources", {{"requests", {{"storage", storage.value("size", Json("1Gi"))}}}}}};
    if (storage.contains("storageClassName"))
      spec["storageClassName"] = storage["storageClassName"];
    data["ephemeral"] = {
        {"volumeClaimTemplate",
         {{"metadata", {{"labels", {{"app.kubernetes.io/part-of", "sidelog"}}}}}, {"spec", spec}}}};
  } else {
    Json empty = Json::object();
    if (storage.contains("size")) empty["sizeLimit"] = storage["size"];
    data["emptyDir"] = empty;
  }
  Json volumes = Json::array({
      {{"name", kConfigVolume}, {"configMap", {{"name", config_map}}}},
      data,
  });
  if (options.nats_identities) {
    volumes.push_back({{"name", kIdentityVolume},
                       {"secret", {{"secretName", NatsIdentitySecret("EventService", service)}}}});
  } else if (!options.nats_creds_secret.empty()) {
    volumes.push_back(
        {{"name", kCredsVolume}, {"secret", {{"secretName", options.nats_creds_secret}}}});
  }
  if (!options.nats_tls_secret.empty()) {
    volumes.push_back(
        {{"name", kTlsVolume}, {"secret", {{"secretName", options.nats_tls_secret}}}});
  }
  return volumes;
}

// Why `service` cannot configure a sidecar yet, or "" when it can.
std::string NotReady(const Json& service) {
  const Json status = service.value("status", Json::object());
  for (const auto& c : status.value("conditions", Json::array())) {
    if (c.value("type", "") != "Ready") continue;
    if (c.value("status", "") != "True") {
      return c.value("reason", "NotReady") + ": " + c.value("message", "");
    }
    if (status.value("/sidecarConfig/configMap"_json_pointer, std::string()).empty()) {
      return "its sidecar config is not rendered yet";
    }
    return "";
  }
  return "the operator has not reconciled it yet";
}

// The app's own use of what the sidecar needs: ports, volume and container names.
std::string Clash(const Json& spec, int port) {
  if (spec.value("hostNetwork", false)) {
    return "uses hostNetwork: the sidecar's loopback API would be the node's; run the pod on "
           "the pod network";
  }
  const std::set<std::string> ours = {kConfigVolume, kDataVolume, kCredsVolume, kTlsVolume};
  for (const auto& v : spec.value("volumes", Json::array())) {
    if (ours.count(v.value("name", ""))) {
      return "has a volume named " + v.value("name", "") +
             ", which the sidecar needs: rename the pod's volume";
    }
  }
  for (const char* list : {"initContainers", "containers"}) {
    for (const auto& c : spec.value(list, Json::array())) {
      const std::string name = c.value("name", "");
      for (const auto& p : c.value("ports", Json::array())) {
        int n = p.value("containerPort", 0);
        if (n == port || n == kSidecarHealthPort) {
          return "container " + name + " uses port " + std::to_string(n) +
                 ", which is the sidecar's " +
                 (n == port ? "API port (set spec.sidecar.port to move it)" : "health port");
        }
      }
    }
  }
  return "";
}

}  // namespace

bool SelectorMatches(const Json& selector, const Json& labels) {
  if (!selector.is_object() || selector.empty()) return false;
  auto label = [&labels](const std::string& key) -> const Json* {
    if (!labels.is_object() || !labels.contains(key)) return nullptr;
    return &labels[key];
  };
  bool any = false;
  const Json match_labels = selector.value("matchLabels", Json::object());
  for (const auto& [key, value] : match_labels.items()) {
    any = true;
    const Json* l = label(key);
    if (!l || *l != value) return false;
  }
  for (const auto& e : selector.value("matchExpressions", Json::array())) {
    any = true;
    const std::string op = e.value("operator", "");
    const Json* l = label(e.value("key", ""));
    const Json values = e.value("values", Json::array());
    bool in = l && std::find(values.begin(), values.end(), *l) != values.end();
    if (op == "In" && !in) return false;
    if (op == "NotIn" && in) return false;
    if (op == "Exists" && !l) return false;
    if (op == "DoesNotExist" && l) return false;
    if (op != "In" && op != "NotIn" && op != "Exists" && op != "DoesNotExist") return false;
  }
  return any;
}

AdmissionDecision InjectSidecar(const Json& pod, const std::string& ns, const std::string& pod_name,
                                const std::vector<std::shared_ptr<const Json>>& services,
                                const InjectorOptions& options) {
  const std::string who = "pod " + ns + "/" + pod_name;
  {
    auto spec = pod.find("spec");
    if (spec == pod.end() || !spec->is_object() || !spec->contains("containers") ||
        !(*spec)["containers"].is_array() ||
        (spec->contains("initContainers") && !(*spec)["initContainers"].is_array())) {
      return Deny(who + " has no spec.containers list: there is nothing to put the sidecar beside");
    }
  }
  const Json labels = ObjectAt(pod, "/metadata/labels");
  const Json annotations = ObjectAt(pod, "/metadata/annotations");
  const Json spec = pod.value("spec", Json::object());
  const Json init = spec.value("initContainers", Json::array());
  const Json containers = spec.value("containers", Json::array());

  // Which EventService.
  std::vector<std::string> names;
  names.reserve(services.size());
  for (const auto& s : services) names.push_back(NameOf(*s));
  std::sort(names.begin(), names.end());
  const Json* service = nullptr;
  const std::string labelled = labels.value(kServiceLabel, "");
  if (!labelled.empty()) {
    for (const auto& s : services) {
      if (NameOf(*s) == labelled) service = s.get();
    }
    if (!service) {
      return Deny(who + " is labelled " + kServiceLabel + "=" + labelled + " but namespace " + ns +
                  " has no EventService " + labelled +
                  "; EventServices here: " + (names.empty() ? "none" : Join(names)));
    }
  } else {
    std::vector<std::string> matching;
    for (const auto& s : services) {
      if (SelectorMatches(ObjectAt(*s, "/spec/selector"), labels)) {
        matching.push_back(NameOf(*s));
        service = s.get();
      }
    }
    std::sort(matching.begin(), matching.end());
    if (matching.empty()) {
      return Deny("no EventService of namespace " + ns + " selects " + who + ": label it " +
                  kServiceLabel +
                  ": <name>, or give an EventService a selector "
                  "that matches it (EventServices here: " +
                  (names.empty() ? "none" : Join(names)) + ")");
    }
    if (matching.size() > 1) {
      return Deny(who + " is selected by EventServices " + Join(matching) + ": label it " +
                  kServiceLabel + ": <name> to choose one, or make their selectors disjoint");
    }
  }
  const std::string service_name = NameOf(*service);
  const Json sidecar = ObjectAt(*service, "/spec/sidecar");
  const int port = sidecar.value("port", 4380);
  const std::string url = "http://127.0.0.1:" + std::to_string(port);

  // Already injected (a reinvocation, or a pod copied from an injected one): only a container
  // added since lacks the URL.
  bool has_sidecar = false;
  for (const auto& c : init) has_sidecar |= c.value("name", "") == kSidecarContainer;
  for (const auto& c : containers) {
    if (c.value("name", "") == kSidecarContainer) {
      return Deny(who + " has an app container named " + kSidecarContainer +
                  ", the sidecar's name: rename it");
    }
  }
  if (has_sidecar) {
    if (!annotations.contains(kInjectedAnnotation)) {
      return Deny(who + " declares an init container named " + kSidecarContainer +
                  " itself: remove it (the operator adds the sidecar) or remove the label " +
                  kInjectLabel);
    }
    AdmissionDecision d;
    AddUrl(d.patch, containers, "/spec/containers", url);
    AddUrl(d.patch, init, "/spec/initContainers", url, kSidecarContainer);
    return d;
  }

  if (auto why = NotReady(*service); !why.empty()) {
    return Deny("EventService " + ns + "/" + service_name + " is not Ready (" + why + "), so " +
                who +
                " would start without a sidecar config: see kubectl describe "
                "eventservice -n " +
                ns + " " + service_name);
  }
  if (auto clash = Clash(spec, port); !clash.empty()) return Deny(who + " " + clash);

  const Json status = service->value("status", Json::object());
  const std::string config_map =
      status.value("/sidecarConfig/configMap"_json_pointer, std::string());
  const std::string hash = status.value("/sidecarConfig/hash"_json_pointer, std::string());

  AdmissionDecision d;
  Json& patch = d.patch;
  // The URL first: the indexes of the pod's init containers move once the sidecar goes in.
  AddUrl(patch, containers, "/spec/containers", url);
  AddUrl(patch, init, "/spec/initContainers", url);
  Json container = SidecarContainer(sidecar, options);
  if (annotations.contains(kAppPortAnnotation)) {
    const Json& v = annotations[kAppPortAnnotation];
    const std::string text = v.is_string() ? v.get<std::string>() : std::string();
    const bool digits = !text.empty() && text.size() <= 5 &&
                        text.find_first_not_of("0123456789") == std::string::npos;
    const int app_port = digits ? std::stoi(text) : 0;
    if (app_port < 1 || app_port > 65535 || std::to_string(app_port) != text) {
      return Deny(who + " has annotation " + kAppPortAnnotation + "=\"" + text.substr(0, 40) +
                  "\": it must be the app's port, a number from 1 to 65535");
    }
    container["env"].push_back({{"name", "SIDELOG_APP_PORT"}, {"value", text}});
  }
  if (spec.contains("initContainers") && spec["initContainers"].is_array()) {
    patch.push_back({{"op", "add"}, {"path", "/spec/initContainers/0"}, {"value", container}});
  } else {
    patch.push_back(
        {{"op", "add"}, {"path", "/spec/initContainers"}, {"value", Json::array({container})}});
  }
  Append(patch, pod, "/spec/volumes", Volumes(sidecar, service_name, config_map, options));
  SetMapEntries(patch, pod, "/metadata/labels", {{kServiceLabel, service_name}});
  SetMapEntries(patch, pod, "/metadata/annotations",
                {{kConfigHashAnnotation, hash}, {kInjectedAnnotation, options.operator_version}});
  return d;
}

AdmissionDecision InjectSidecarFor(
    const Json& request,
    const std::function<std::vector<std::shared_ptr<const Json>>(const std::string& ns)>& services,
    const InjectorOptions& options) {
  auto text = [](const Json& object, const char* key) {
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  auto kind = request.find("kind");
  if (kind == request.end() || !kind->is_object() || text(*kind, "kind") != "Pod" ||
      text(request, "operation") != "CREATE") {
    return {};
  }
  const std::string ns = text(request, "namespace");
  auto object = request.find("object");
  if (object == request.end() || !object->is_object()) {
    AdmissionDecision d;
    d.allowed = false;
    d.code = 400;
    d.message = "the admission request has no pod object";
    return d;
  }
  const Json& pod = *object;
  auto meta = pod.find("metadata");
  const Json no_meta = Json::object();
  const Json& m = meta != pod.end() && meta->is_object() ? *meta : no_meta;
  std::string name = text(request, "name");
  if (name.empty()) name = text(m, "name");
  if (name.empty()) name = text(m, "generateName") + "*";
  return InjectSidecar(pod, ns, name, services(ns), options);
}

}  // namespace sidelog::op
