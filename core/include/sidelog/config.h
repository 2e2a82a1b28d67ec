// The sidecar's YAML configuration (DESIGN.md "Sidecar config"), loaded with yaml-cpp.
// Every error names the file, the line and the field, e.g.
//   "orders.yaml:14: streams[0].entity.reducers.ItemAdded[0].op: \"add\" is not one of ...".
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sidelog/event.h"
#include "sidelog/fold.h"
#include "sidelog/status.h"
#include "sidelog/yaml.h"

namespace sidelog {

struct NatsTlsConfig {
  std::string ca;
  std::string cert;
  std::string key;
};

struct NatsConfig {
  std::string url;
  std::string creds_file;
  std::string user;
  std::string password;
  std::string token;
  NatsTlsConfig tls;
  bool create_streams = false;    // dev mode: create missing JetStream streams
  int publish_timeout_ms = 5000;  // sidecar: how long an append waits for its PubAck
  // Where the connection's replies arrive (not in the YAML: the sidecar's and consolidator's
  // own, from names.h, so that a NATS identity may subscribe there only); empty: _INBOX.
  std::string inbox_prefix;
};

enum class StreamAccess { kRead, kWrite };

// Push delivery of a stream's events to the app (docs/subscriptions.md).
enum class DeliverGroup {
  kService,  // the service's pods share one position: each event goes to one of them
  kPod,      // every pod keeps its own position and gets every event
};
enum class DeliverOrdering {
  kEntity,  // an entity's next event only after the previous one was acknowledged or parked
  kNone,    // any order, up to maxInFlight at once
};
enum class CloudEventsMode {
  kBinary,      // ce-* headers, the event's data as the body
  kStructured,  // application/cloudevents+json: the whole envelope as the body
};

struct DeliverConfig {
  std::string path;  // the app's route, e.g. "/events/orders"
  int port = 0;      // 0: SidecarConfig::app_port
  DeliverGroup group = DeliverGroup::kService;
  DeliverOrdering ordering = DeliverOrdering::kEntity;
  CloudEventsMode mode = CloudEventsMode::kBinary;
  int max_in_flight = 16;
  int64_t initial_backoff_ms = 100;
  int64_t max_backoff_ms = 30000;
  int max_attempts = 5;  // then the event is parked
  int64_t timeout_ms = 10000;
};

struct StreamConfig {
  std::string name;
  StreamAccess access = StreamAccess::kRead;
  std::vector<std::string> types;  // empty: every type
  Json entity = Json::object();    // the folding rules as declared
  std::shared_ptr<const Rules> rules;
  std::optional<DeliverConfig> deliver;  // absent: the app reads or subscribes itself
};

struct LimitsConfig {
  int64_t max_body_bytes = 1 << 20;
  int64_t max_events_per_commit = 1000;
  int64_t max_header_bytes = 16 << 10;
  int64_t max_url_bytes = 8 << 10;
};

struct SseConfig {
  int heartbeat_ms = 15000;              // an SSE comment when nothing was sent this long
  int64_t max_buffered_bytes = 8 << 20;  // per subscriber; beyond it reading pauses
};

struct SidecarConfig {
  std::string service = "local";
  std::string ns = "default";
  std::string listen = "127.0.0.1:4380";
  std::string health_listen = "0.0.0.0:4381";
  std::string data_dir = ".sidelog/data";
  std::optional<NatsConfig> nats;  // absent: standalone
  std::string durability;          // "", "fsync" or "normal"; "" picks the mode's default
  int snapshot_every = 100;
  std::string log_level = "info";
  LimitsConfig limits;
  SseConfig sse;
  std::vector<StreamConfig> streams;
  // Where push deliveries go: the app's address in the pod. A stream's `deliver.port` wins
  // over `app_port`; the sidecar's SIDELOG_APP_PORT environment variable sets `app_port`.
  std::string app_host = "127.0.0.1";
  int app_port = 0;
  // Deprecated spellings found while loading, such as a transition's `on`: the program logs
  // them (LogConfigWarnings) once logging is set up.
  std::vector<ConfigWarning> warnings;

  const StreamConfig* FindStream(const std::string& name) const;
};

// Parses YAML text; `origin` names it in errors and warnings (a file name).
Result<SidecarConfig> ParseSidecarConfig(const std::string& yaml, const std::string& origin);
// Reads and parses a file.
Result<SidecarConfig> LoadSidecarConfig(const std::string& path);

// A `nats:` section (url, credsFile, user, password, token, tls {ca, cert, key}, and
// createStreams when `allow_create_streams`) at JSON pointer `pointer` of `doc`, for other
// programs' configs (the consolidator's). Errors name the file, line and field.
Result<NatsConfig> ParseNatsConfig(const YamlDocument& doc, const Json& node,
                                   const std::string& pointer, bool allow_create_streams);

// Logs each warning at level warn: its message, with the file, line and field.
void LogConfigWarnings(const std::vector<ConfigWarning>& warnings);

}  // namespace sidelog
