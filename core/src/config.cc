#include "sidelog/config.h"

#include <set>

#include "sidelog/duration.h"
#include "sidelog/log.h"
#include "sidelog/names.h"
#include "sidelog/yaml.h"

namespace sidelog {
namespace {

class Parser {
 public:
  explicit Parser(YamlDocument doc) : doc_(std::move(doc)) {}

  Status Error(const std::string& ptr, const std::string& message) const {
    return doc_.Error(ptr, message);
  }

  Status Keys(const Json& obj, const std::string& ptr, std::initializer_list<const char*> keys) {
    if (!obj.is_object()) return Error(ptr, "must be a mapping");
    for (const auto& [k, v] : obj.items()) {
      bool known = false;
      for (const char* key : keys) known = known || k == key;
      if (!known) {
        std::string list;
        for (const char* key : keys) {
          if (!list.empty()) list += ", ";
          list += key;
        }
        return Error(ptr + "/" + EscapePointerToken(k),
                     "unknown field \"" + k + "\" (known fields: " + list + ")");
      }
    }
    return Status::Ok();
  }

  Status String(const Json& obj, const std::string& ptr, const char* key, std::string* out,
                bool required = false) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
      return required ? Error(ptr + "/" + key, "is required") : Status::Ok();
    }
    if (!it->is_string()) return Error(ptr + "/" + key, "must be a string");
    *out = it->get<std::string>();
    return Status::Ok();
  }

  Status Int(const Json& obj, const std::string& ptr, const char* key, int64_t* out, int64_t min,
             int64_t max) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return Status::Ok();
    if (!it->is_number_integer()) return Error(ptr + "/" + key, "must be an integer");
    int64_t v = it->get<int64_t>();
    if (v < min || v > max) {
      return Error(ptr + "/" + key, "must be between " + std::to_string(min) + " and " +
                                        std::to_string(max) + ", it is " + std::to_string(v));
    }
    *out = v;
    return Status::Ok();
  }

  // A `nats:` section: url, credsFile, user, password, token, tls {ca, cert, key}, and
  // createStreams when `allow_create_streams`.
  Result<NatsConfig> Nats(const Json& node, const std::string& p, bool allow_create_streams) {
    NatsConfig n;
    auto keys = allow_create_streams
                    ? Keys(node, p,
                           {"url", "credsFile", "user", "password", "token", "tls", "createStreams",
                            "publishTimeout"})
                    : Keys(node, p, {"url", "credsFile", "user", "password", "token", "tls"});
    if (!keys.ok()) return keys;
    for (auto s : {String(node, p, "url", &n.url, true),
                   String(node, p, "credsFile", &n.creds_file), String(node, p, "user", &n.user),
                   String(node, p, "password", &n.password), String(node, p, "token", &n.token)}) {
      if (!s.ok()) return s;
    }
    // Several servers (a cluster) are comma-separated; each must name its scheme.
    for (size_t start = 0; start <= n.url.size();) {
      size_t comma = n.url.find(',', start);
      if (comma == std::string::npos) comma = n.url.size();
      std::string u = n.url.substr(start, comma - start);
      while (!u.empty() && u.front() == ' ') u.erase(u.begin());
      if (u.rfind("nats://", 0) != 0 && u.rfind("tls://", 0) != 0) {
        return Error(p + "/url", "\"" + u + "\" must start with nats:// or tls://");
      }
      start = comma + 1;
    }
    if (auto pt = node.find("publishTimeout"); pt != node.end()) {
      auto d = pt->is_string() ? ParseDuration(pt->get<std::string>())
                               : Result<std::chrono::nanoseconds>(Status::Invalid("not a string"));
      const auto ms =
          d.ok() ? std::chrono::duration_cast<std::chrono::milliseconds>(*d).count() : 0;
      if (!d.ok() || ms < 100 || ms > 300000) {
        return Error(p + "/publishTimeout",
                     "must be a duration between 100ms and 5m, such as \"5s\"");
      }
      n.publish_timeout_ms = static_cast<int>(ms);
    }
    if (auto cs = node.find("createStreams"); cs != node.end()) {
      if (!cs->is_boolean()) return Error(p + "/createStreams", "must be true or false");
      n.create_streams = cs->get<bool>();
    }
    if (auto tls = node.find("tls"); tls != node.end() && !tls->is_null()) {
      if (auto s = Keys(*tls, p + "/tls", {"ca", "cert", "key"}); !s.ok()) return s;
      for (auto s : {String(*tls, p + "/tls", "ca", &n.tls.ca),
                     String(*tls, p + "/tls", "cert", &n.tls.cert),
                     String(*tls, p + "/tls", "key", &n.tls.key)}) {
        if (!s.ok()) return s;
      }
      if (n.tls.cert.empty() != n.tls.key.empty()) {
        return Error(p + "/tls", "cert and key must be given together");
      }
    }
    return n;
  }

  Status HostPort(const Json& obj, const std::string& ptr, const char* key, std::string* out) {
    if (auto s = String(obj, ptr, key, out); !s.ok()) return s;
    auto colon = out->rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == out->size() ||
        out->substr(colon + 1).find_first_not_of("0123456789") != std::string::npos) {
      return Error(ptr + "/" + key, "\"" + *out + "\" must be host:port, like 127.0.0.1:4380");
    }
    return Status::Ok();
  }

  // A duration field within [min_ms, max_ms], in milliseconds.
  Status Millis(const Json& obj, const std::string& ptr, const char* key, int64_t* out,
                int64_t min_ms, int64_t max_ms, const char* example) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return Status::Ok();
    auto d = it->is_string() ? ParseDuration(it->get<std::string>())
                             : Result<std::chrono::nanoseconds>(Status::Invalid("not a string"));
    const int64_t ms =
        d.ok() ? std::chrono::duration_cast<std::chrono::milliseconds>(*d).count() : -1;
    if (ms < min_ms || ms > max_ms) {
      return Error(ptr + "/" + key, std::string("must be a duration between ") +
                                        FormatMillis(min_ms) + " and " + FormatMillis(max_ms) +
                                        ", such as \"" + example + "\"");
    }
    *out = ms;
    return Status::Ok();
  }

  static std::string FormatMillis(int64_t ms) {
    if (ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
    if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    return std::to_string(ms) + "ms";
  }

  // A stream's `deliver:` section (DESIGN.md "EventService", docs/subscriptions.md).
  Result<DeliverConfig> Deliver(const Json& d, const std::string& p) {
    if (auto s = Keys(d, p,
                      {"path", "port", "group", "ordering", "maxInFlight", "retry", "timeout",
                       "cloudEvents"});
        !s.ok()) {
      return s;
    }
    DeliverConfig c;
    if (auto s = String(d, p, "path", &c.path, true); !s.ok()) return s;
    if (c.path.empty() || c.path[0] != '/' ||
        c.path.find_first_of(" \t\r\n?#") != std::string::npos || c.path.size() > 1024) {
      return Error(p + "/path",
                   "must be an absolute path such as \"/events\", without spaces, "
                   "query or fragment");
    }
    int64_t port = 0, in_flight = c.max_in_flight, attempts = c.max_attempts;
    for (auto s : {Int(d, p, "port", &port, 1, 65535), Int(d, p, "maxInFlight", &in_flight, 1, 256),
                   Millis(d, p, "timeout", &c.timeout_ms, 10, 300000, "10s")}) {
      if (!s.ok()) return s;
    }
    c.port = static_cast<int>(port);
    c.max_in_flight = static_cast<int>(in_flight);
    std::string group = "service", ordering = "entity", mode = "binary";
    for (auto s : {String(d, p, "group", &group), String(d, p, "ordering", &ordering),
                   String(d, p, "cloudEvents", &mode)}) {
      if (!s.ok()) return s;
    }
    if (group != "service" && group != "pod") {
      return Error(p + "/group", "\"" + group + "\" is not one of service, pod");
    }
    if (ordering != "entity" && ordering != "none") {
      return Error(p + "/ordering", "\"" + ordering + "\" is not one of entity, none");
    }
    if (mode != "binary" && mode != "structured") {
      return Error(p + "/cloudEvents", "\"" + mode + "\" is not one of binary, structured");
    }
    c.group = group == "pod" ? DeliverGroup::kPod : DeliverGroup::kService;
    c.ordering = ordering == "none" ? DeliverOrdering::kNone : DeliverOrdering::kEntity;
    c.mode = mode == "structured" ? CloudEventsMode::kStructured : CloudEventsMode::kBinary;
    if (auto r = d.find("retry"); r != d.end() && !r->is_null()) {
      const std::string rp = p + "/retry";
      if (auto s = Keys(*r, rp, {"initialBackoff", "maxBackoff", "maxAttempts"}); !s.ok()) {
        return s;
      }
      for (auto s : {Millis(*r, rp, "initialBackoff", &c.initial_backoff_ms, 1, 3600000, "100ms"),
                     Millis(*r, rp, "maxBackoff", &c.max_backoff_ms, 1, 3600000, "30s"),
                     Int(*r, rp, "maxAttempts", &attempts, 1, 1000)}) {
        if (!s.ok()) return s;
      }
      c.max_attempts = static_cast<int>(attempts);
      if (c.max_backoff_ms < c.initial_backoff_ms) {
        return Error(rp + "/maxBackoff", "must not be shorter than initialBackoff");
      }
    }
    return c;
  }

  Result<SidecarConfig> Parse() {
    SidecarConfig c;
    const Json& r = doc_.root;
    if (r.is_null()) return Error("", "the configuration is empty");
    if (auto s =
            Keys(r, "",
                 {"service", "namespace", "listen", "healthListen", "dataDir", "nats", "durability",
                  "snapshotEvery", "logLevel", "limits", "sse", "streams", "appHost", "appPort"});
        !s.ok()) {
      return s;
    }
    for (auto s :
         {String(r, "", "service", &c.service), String(r, "", "namespace", &c.ns),
          HostPort(r, "", "listen", &c.listen), HostPort(r, "", "healthListen", &c.health_listen),
          String(r, "", "dataDir", &c.data_dir), String(r, "", "durability", &c.durability),
          String(r, "", "logLevel", &c.log_level), String(r, "", "appHost", &c.app_host)}) {
      if (!s.ok()) return s;
    }
    int64_t app_port = 0;
    if (auto s = Int(r, "", "appPort", &app_port, 1, 65535); !s.ok()) return s;
    c.app_port = static_cast<int>(app_port);
    if (auto s = ValidateStreamName(c.service); !s.ok()) {
      return Error("/service", "\"" + c.service +
                                   "\" must be a DNS-1123 label (lowercase "
                                   "letters, digits, '-')");
    }
    if (auto s = ValidateStreamName(c.ns); !s.ok()) {
      return Error("/namespace", "\"" + c.ns + "\" must be a DNS-1123 label");
    }
    if (!c.durability.empty() && c.durability != "fsync" && c.durability != "normal") {
      return Error("/durability", "\"" + c.durability + "\" is not one of fsync, normal");
    }
    static const std::set<std::string> kLevels = {"trace", "debug",    "info", "warn",
                                                  "error", "critical", "off"};
    if (!kLevels.count(c.log_level)) {
      return Error(
          "/logLevel",
          "\"" + c.log_level + "\" is not one of trace, debug, info, warn, error, critical, off");
    }
    int64_t snap = c.snapshot_every;
    if (auto s = Int(r, "", "snapshotEvery", &snap, 0, 1000000); !s.ok()) return s;
    c.snapshot_every = static_cast<int>(snap);

    if (auto it = r.find("limits"); it != r.end() && !it->is_null()) {
      if (auto s = Keys(*it, "/limits",
                        {"maxBodyBytes", "maxEventsPerCommit", "maxHeaderBytes", "maxUrlBytes"});
          !s.ok()) {
        return s;
      }
      for (auto s :
           {Int(*it, "/limits", "maxBodyBytes", &c.limits.max_body_bytes, 1024, 64 << 20),
            Int(*it, "/limits", "maxEventsPerCommit", &c.limits.max_events_per_commit, 1, 100000),
            Int(*it, "/limits", "maxHeaderBytes", &c.limits.max_header_bytes, 1024, 1 << 20),
            Int(*it, "/limits", "maxUrlBytes", &c.limits.max_url_bytes, 256, 1 << 20)}) {
        if (!s.ok()) return s;
      }
    }

    if (auto it = r.find("sse"); it != r.end() && !it->is_null()) {
      if (auto s = Keys(*it, "/sse", {"heartbeatMs", "maxBufferedBytes"}); !s.ok()) return s;
      int64_t hb = c.sse.heartbeat_ms;
      for (auto s :
           {Int(*it, "/sse", "heartbeatMs", &hb, 100, 3600000),
            Int(*it, "/sse", "maxBufferedBytes", &c.sse.max_buffered_bytes, 4096, 1LL << 30)}) {
        if (!s.ok()) return s;
      }
      c.sse.heartbeat_ms = static_cast<int>(hb);
    }

    if (auto it = r.find("nats"); it != r.end() && !it->is_null()) {
      auto n = Nats(*it, "/nats", /*allow_create_streams=*/true);
      if (!n.ok()) return n.status();
      c.nats = *n;
      c.nats->inbox_prefix = SidecarInboxPrefix(c.ns, c.service);
    }

    auto streams = r.find("streams");
    if (streams == r.end() || !streams->is_array() || streams->empty()) {
      return Error("/streams", "is required: a list of at least one stream");
    }
    std::set<std::string> names;
    for (size_t i = 0; i < streams->size(); ++i) {
      const Json& sj = (*streams)[i];
      const std::string p = "/streams/" + std::to_string(i);
      if (auto s = Keys(sj, p, {"name", "access", "types", "entity", "deliver"}); !s.ok()) {
        return s;
      }
      StreamConfig sc;
      if (auto s = String(sj, p, "name", &sc.name, true); !s.ok()) return s;
      if (auto s = ValidateStreamName(sc.name); !s.ok()) return Error(p + "/name", s.message());
      if (!names.insert(sc.name).second) {
        return Error(p + "/name", "stream " + sc.name + " is listed twice");
      }
      std::string access = "read";
      if (auto s = String(sj, p, "access", &access); !s.ok()) return s;
      if (access != "read" && access != "write") {
        return Error(p + "/access", "\"" + access + "\" is not one of read, write");
      }
      sc.access = access == "write" ? StreamAccess::kWrite : StreamAccess::kRead;
      if (auto t = sj.find("types"); t != sj.end() && !t->is_null()) {
        if (!t->is_array()) return Error(p + "/types", "must be a list of event types");
        for (size_t k = 0; k < t->size(); ++k) {
          const std::string tp = p + "/types/" + std::to_string(k);
          if (!(*t)[k].is_string()) return Error(tp, "must be an event type");
          auto type = (*t)[k].get<std::string>();
          if (auto s = ValidateEventType(type); !s.ok()) return Error(tp, s.message());
          sc.types.push_back(type);
        }
      }
      if (auto e = sj.find("entity"); e != sj.end() && !e->is_null()) sc.entity = *e;
      auto rules = Rules::Compile(sc.entity);
      if (!rules.ok()) {
        // The rules name their field as a pointer inside `entity`, followed by ": message".
        const auto& st = rules.status();
        const std::string& field = st.context().rule;
        std::string message = st.message();
        if (message.rfind(field + ": ", 0) == 0) message = message.substr(field.size() + 2);
        return Error(p + "/entity" + field, message);
      }
      sc.rules = *rules;
      for (const auto& d : sc.rules->deprecations()) {
        c.warnings.push_back(doc_.Warning(p + "/entity" + d.field, d.message));
      }
      if (auto d = sj.find("deliver"); d != sj.end() && !d->is_null()) {
        auto deliver = Deliver(*d, p + "/deliver");
        if (!deliver.ok()) return deliver.status();
        sc.deliver = *deliver;
      }
      c.streams.push_back(std::move(sc));
    }
    return c;
  }

 private:
  YamlDocument doc_;
};

}  // namespace

const StreamConfig* SidecarConfig::FindStream(const std::string& name) const {
  for (const auto& s : streams) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

Result<SidecarConfig> ParseSidecarConfig(const std::string& yaml, const std::string& origin) {
  auto doc = ParseYaml(yaml, origin);
  if (!doc.ok()) return doc.status();
  return Parser(std::move(doc).value()).Parse();
}

Result<SidecarConfig> LoadSidecarConfig(const std::string& path) {
  auto doc = LoadYamlFile(path);
  if (!doc.ok()) return doc.status();
  return Parser(std::move(doc).value()).Parse();
}

Result<NatsConfig> ParseNatsConfig(const YamlDocument& doc, const Json& node,
                                   const std::string& pointer, bool allow_create_streams) {
  return Parser(doc).Nats(node, pointer, allow_create_streams);
}

void LogConfigWarnings(const std::vector<ConfigWarning>& warnings) {
  for (const auto& w : warnings) {
    log::Warn(w.message, {{"file", w.file}, {"line", w.line}, {"field", w.field}});
  }
}

}  // namespace sidelog
