// The sidecar config of one EventService, as the operator renders it: exactly the YAML that
// `sidelog-sidecar --config` reads (DESIGN.md "Sidecar config"), with each stream's folding
// rules copied from its EventStream. Pure functions of their inputs, so a rendering is
// reproducible and its hash changes only when its content does.
#pragma once

#include <string>
#include <vector>

#include "kube_client.h"
#include "sidelog/config.h"

namespace sidelog::op {

// One stream in the rendered config.
struct RenderedStream {
  std::string name;
  bool write = false;              // produced (write) or consumed (read)
  std::vector<std::string> types;  // consumes[].types: narrows the API; empty: every type
  Json entity = Json::object();    // the EventStream's spec.entity, as declared
  Json deliver;                    // consumes[].deliver, as declared; null: no push delivery
};

// Where the sidecar listens and keeps its log, and how it reaches NATS.
struct SidecarSettings {
  std::string data_dir = "/var/lib/sidelog";
  std::string health_listen = "0.0.0.0:4381";
  // The operator's NATS: url, credsFile and tls paths are rendered (the chart mounts the same
  // Secret at the same path in the operator and the sidecars); user, password and token are
  // secrets and never go into a ConfigMap.
  NatsConfig nats;
};

// The config's YAML. `service` is the EventService object; `streams` are its resolved
// streams, produced ones first, each list in spec order.
std::string RenderSidecarConfig(const Json& service, const std::vector<RenderedStream>& streams,
                                const SidecarSettings& settings);

// The ConfigMap "sidelog-<service>" that holds `yaml` under the key sidecar.yaml, owned by
// the EventService, with the content hash in the annotation sidelog.dev/config-hash.
Json SidecarConfigMap(const Json& service, const std::string& yaml);

// "sidelog-<service>".
std::string SidecarConfigMapName(const std::string& service);
// The key of the config in the ConfigMap's data.
inline constexpr const char* kSidecarConfigKey = "sidecar.yaml";
inline constexpr const char* kConfigHashAnnotation = "sidelog.dev/config-hash";

// A config's `nats:` section for `nats`: url, credsFile and tls paths (never a secret).
Json NatsSection(const NatsConfig& nats);

// YAML text of a JSON value in block style, with every string that YAML 1.1 or 1.2 could read
// as something else (on, yes, 1.0, null, ...) quoted.
std::string ToYaml(const Json& value);

}  // namespace sidelog::op
