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
};

enum class StreamAccess { kRead, kWrite };

struct StreamConfig {
  std::string name;
  StreamAccess access = StreamAccess::kRead;
  std::vector<std::string> types;  // empty: every type
  Json entity = Json::object();    // the folding rules as declared
  std::shared_ptr<const Rules> rules;
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
