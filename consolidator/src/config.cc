#include "config.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "event_parameter.h"
#include "sidelog/duration.h"
#include "sidelog/names.h"
#include "sql_template.h"

namespace sidelog::consolidator {
namespace {

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    out.push_back(text.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return out;
}

class Parser {
 public:
  Parser(YamlDocument doc, const std::string& text) {
    c_.doc = std::move(doc);
    c_.source_lines = Lines(text);
  }

  Result<ConsolidatorConfig> Parse() {
    const Json& r = c_.doc.root;
    if (r.is_null()) return Error("", "the configuration is empty");
    if (auto st = Keys(
            r, "",
            {"name", "sidecar", "namespace", "nats", "listen", "logLevel", "sources", "target",
             "schema", "handlers", "queries", "delivery", "batch", "onError", "replicas", "image"});
        !st.ok()) {
      return st;
    }
    // In order, stopping at the first error: handlers need the sources and the target.
    using Step = Status (Parser::*)();
    for (Step step :
         {&Parser::Name, &Parser::Sidecar, &Parser::Listen, &Parser::LogLevel, &Parser::Sources,
          &Parser::Target, &Parser::Schema, &Parser::Handlers, &Parser::Queries, &Parser::Batch,
          &Parser::OnErrorField, &Parser::Replicas, &Parser::Image}) {
      if (auto st = (this->*step)(); !st.ok()) return st;
    }
    return std::move(c_);
  }

 private:
  Status Error(const std::string& ptr, const std::string& message) const {
    return c_.doc.Error(ptr, message);
  }
  const Json& root() const { return c_.doc.root; }

  Status Keys(const Json& obj, const std::string& ptr, std::initializer_list<const char*> keys) {
    if (!obj.is_object()) return Error(ptr, "must be a mapping");
    for (const auto& [k, v] : obj.items()) {
      bool known = false;
      for (const char* key : keys) known = known || k == key;
      if (!known) {
        std::vector<std::string> list(keys.begin(), keys.end());
        return Error(ptr + "/" + EscapePointerToken(k),
                     "unknown field \"" + k + "\" (known fields: " + Join(list) + ")");
      }
    }
    return Status::Ok();
  }

  // Reads an optional string field; Invalid when present and not a string (or empty and
  // `required`).
  Status String(const Json& obj, const std::string& ptr, const char* key, std::string* out,
                bool required = false) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
      return required ? Error(ptr + "/" + key, "is required") : Status::Ok();
    }
    if (!it->is_string()) return Error(ptr + "/" + key, "must be a string");
    *out = it->get<std::string>();
    if (required && out->empty()) return Error(ptr + "/" + key, "must not be empty");
    return Status::Ok();
  }

  Status Name() {
    if (auto st = String(root(), "", "name", &c_.name, true); !st.ok()) return st;
    static const std::regex kLabel("^[a-z]([-a-z0-9]*[a-z0-9])?$");
    if (c_.name.size() > 52 || !std::regex_match(c_.name, kLabel)) {
      return Error("/name", "\"" + c_.name +
                                "\" must be a DNS-1035 label of at most 52 characters (lowercase "
                                "letters, digits, '-', starting with a letter)");
    }
    return Status::Ok();
  }

  // Where events come from: `sidecar` (its stream API), or `nats` (+ `namespace`, `delivery`).
  Status Sidecar() {
    std::string delivery;
    if (auto st = String(root(), "", "delivery", &delivery); !st.ok()) return st;
    if (!delivery.empty() && delivery != "pull" && delivery != "push") {
      return Error("/delivery", "\"" + delivery + "\" is not one of pull, push");
    }
    auto sidecar = root().find("sidecar");
    auto nats = root().find("nats");
    const bool has_sidecar = sidecar != root().end() && !sidecar->is_null();
    const bool has_nats = nats != root().end() && !nats->is_null();
    if (!delivery.empty() && !has_nats) {
      return Error("/delivery", "delivery: " + delivery +
                                    " reads from JetStream: give nats (and namespace) instead of "
                                    "sidecar");
    }
    if (has_sidecar == has_nats) {
      return Error(has_sidecar ? "/nats" : "",
                   has_sidecar ? "give either sidecar or nats, not both"
                               : "a source of events is required: sidecar: {url: "
                                 "http://127.0.0.1:4380} (a sidecar's stream API), or nats: {url: "
                                 "nats://...} with namespace (JetStream)");
    }
    if (has_nats) {
      auto n = ParseNatsConfig(c_.doc, *nats, "/nats", /*allow_create_streams=*/false);
      if (!n.ok()) return n.status();
      c_.nats = *n;
      c_.delivery = delivery == "pull" ? Delivery::kPull : Delivery::kPush;
      if (auto st = String(root(), "", "namespace", &c_.ns, true); !st.ok()) return st;
      static const std::regex kLabel("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$");
      if (c_.ns.size() > 63 || !std::regex_match(c_.ns, kLabel)) {
        return Error("/namespace", "\"" + c_.ns + "\" is not a Kubernetes namespace name");
      }
      c_.nats->inbox_prefix = ConsolidatorInboxPrefix(c_.ns, c_.name);
      return Status::Ok();
    }
    if (root().contains("namespace")) {
      return Error("/namespace", "namespace goes with nats; a sidecar knows its own");
    }
    if (auto st = Keys(*sidecar, "/sidecar", {"url"}); !st.ok()) return st;
    if (auto st = String(*sidecar, "/sidecar", "url", &c_.sidecar_url, true); !st.ok()) return st;
    if (c_.sidecar_url.rfind("http://", 0) != 0) {
      return Error("/sidecar/url", "\"" + c_.sidecar_url + "\" must start with http://");
    }
    while (c_.sidecar_url.back() == '/') c_.sidecar_url.pop_back();
    return Status::Ok();
  }

  Status Listen() {
    if (auto st = String(root(), "", "listen", &c_.listen); !st.ok()) return st;
    auto colon = c_.listen.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == c_.listen.size() ||
        c_.listen.substr(colon + 1).find_first_not_of("0123456789") != std::string::npos) {
      return Error("/listen", "\"" + c_.listen + "\" must be host:port, like 127.0.0.1:4390");
    }
    return Status::Ok();
  }

  Status LogLevel() {
    if (auto st = String(root(), "", "logLevel", &c_.log_level); !st.ok()) return st;
    static const std::set<std::string> kLevels = {"trace", "debug",    "info", "warn",
                                                  "error", "critical", "off"};
    if (!kLevels.count(c_.log_level)) {
      return Error("/logLevel", "\"" + c_.log_level +
                                    "\" is not one of trace, debug, info, warn, error, critical, "
                                    "off");
    }
    return Status::Ok();
  }

  Status Sources() {
    auto it = root().find("sources");
    if (it == root().end() || it->is_null()) return Error("/sources", "is required");
    if (!it->is_array() || it->empty() || it->size() > 16) {
      return Error("/sources", "must be a list of 1 to 16 sources, like [{stream: orders}]");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& s = (*it)[i];
      std::string p = "/sources/" + std::to_string(i);
      if (auto st = Keys(s, p, {"stream", "types"}); !st.ok()) return st;
      SourceConfig src;
      if (auto st = String(s, p, "stream", &src.stream, true); !st.ok()) return st;
      if (!ValidateStreamName(src.stream).ok()) {
        return Error(p + "/stream",
                     "\"" + src.stream + "\" must be a stream name (a DNS-1123 label)");
      }
      for (const auto& other : c_.sources) {
        if (other.stream == src.stream) {
          return Error(p + "/stream", "stream " + src.stream + " is listed twice");
        }
      }
      if (auto t = s.find("types"); t != s.end() && !t->is_null()) {
        if (!t->is_array()) return Error(p + "/types", "must be a list of event types");
        for (size_t k = 0; k < t->size(); ++k) {
          std::string tp = p + "/types/" + std::to_string(k);
          if (!(*t)[k].is_string() || !ValidateEventType((*t)[k].get<std::string>()).ok()) {
            return Error(tp, "must be an event type ([A-Za-z][A-Za-z0-9._-]{0,127})");
          }
          src.types.push_back((*t)[k].get<std::string>());
        }
        src.types_configured = true;
      }
      c_.sources.push_back(std::move(src));
    }
    return Status::Ok();
  }

  Status Target() {
    auto it = root().find("target");
    if (it == root().end() || it->is_null()) return Error("/target", "is required");
    if (auto st = Keys(*it, "/target", {"sqlite", "postgres"}); !st.ok()) return st;
    bool has_sqlite = it->contains("sqlite"), has_pg = it->contains("postgres");
    if (has_sqlite == has_pg) return Error("/target", "must set exactly one of sqlite, postgres");
    if (has_sqlite) {
      const Json& s = (*it)["sqlite"];
      const std::string p = "/target/sqlite";
      if (auto st = Keys(s, p, {"path", "size", "storageClassName"}); !st.ok()) return st;
      SqliteTarget t;
      if (auto st = String(s, p, "path", &t.path, true); !st.ok()) return st;
      c_.sqlite = t;
      return Status::Ok();
    }
    const Json& s = (*it)["postgres"];
    const std::string p = "/target/postgres";
    if (s.is_object() && s.contains("connectionSecretRef")) {
      return Error(p + "/connectionSecretRef",
                   "is for the Consolidator resource; in a config file, set connection (a libpq "
                   "connection string) or connectionEnv (the environment variable holding it)");
    }
    if (auto st = Keys(s, p, {"connection", "connectionEnv", "schema"}); !st.ok()) return st;
    PostgresTarget t;
    for (auto st :
         {String(s, p, "connection", &t.connection),
          String(s, p, "connectionEnv", &t.connection_env), String(s, p, "schema", &t.schema)}) {
      if (!st.ok()) return st;
    }
    if (t.connection.empty() == t.connection_env.empty()) {
      return Error(p, "must set exactly one of connection, connectionEnv");
    }
    if (!t.connection_env.empty()) {
      const char* v = std::getenv(t.connection_env.c_str());
      if (v == nullptr || *v == '\0') {
        return Error(p + "/connectionEnv",
                     "the environment variable " + t.connection_env + " is not set");
      }
      t.connection = v;
    }
    if (t.schema.empty()) {
      t.schema = c_.name;
      for (char& ch : t.schema) ch = ch == '-' ? '_' : ch;
    }
    static const std::regex kSchema("^[a-z_][a-z0-9_]{0,49}$");
    if (!std::regex_match(t.schema, kSchema)) {
      return Error(p + "/schema", "\"" + t.schema +
                                      "\" must be 1-50 of [a-z0-9_], not starting with a digit "
                                      "(the rebuild uses <schema>_rebuild)");
    }
    c_.postgres = t;
    return Status::Ok();
  }

  Dialect dialect() const { return c_.postgres ? Dialect::kPostgres : Dialect::kSqlite; }

  Status Schema() {
    if (auto st = String(root(), "", "schema", &c_.schema, true); !st.ok()) return st;
    int line = 1;
    auto stmts = ParseSql(c_.schema, dialect(), &line);
    if (!stmts.ok()) return c_.SqlError("/schema", line, stmts.status().message());
    return Status::Ok();
  }

  Status Handlers() {
    auto it = root().find("handlers");
    if (it == root().end() || it->is_null()) return Error("/handlers", "is required");
    if (!it->is_array() || it->empty() || it->size() > 128) {
      return Error("/handlers",
                   "must be a list of 1 to 128 handlers, like [{event: orders/OrderPlaced, "
                   "sql: \"INSERT ...\"}]");
    }
    std::vector<std::string> streams;
    for (const auto& s : c_.sources) streams.push_back(s.stream);
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& h = (*it)[i];
      std::string p = "/handlers/" + std::to_string(i);
      Json current = h;  // without the deprecated `on`, which is checked below
      if (current.is_object()) current.erase("on");
      if (auto st = Keys(current, p, {"event", "sql"}); !st.ok()) return st;
      HandlerConfig hc;
      hc.pointer = p;
      // `on` is the deprecated name of `event`; errors name the key as written.
      const char* key = "event";
      if (h.contains("on")) {
        if (h.contains("event")) {
          return Error(p + "/on", "is the deprecated name of event: give only event");
        }
        key = "on";
        c_.warnings.push_back(c_.doc.Warning(
            p + "/on",
            "on is deprecated, write event: YAML 1.1 readers such as kubectl take a bare on for "
            "the boolean true"));
      }
      const std::string field = p + "/" + key;
      std::string event;
      if (auto st = String(h, p, key, &event); !st.ok()) return st;
      if (event.empty()) {
        return Error(field, "is required: <stream>/<Type>, like orders/OrderPlaced");
      }
      auto slash = event.find('/');
      if (slash == std::string::npos) {
        return Error(field, "\"" + event + "\" must be <stream>/<Type>, like orders/OrderPlaced");
      }
      hc.stream = event.substr(0, slash);
      hc.type = event.substr(slash + 1);
      if (std::find(streams.begin(), streams.end(), hc.stream) == streams.end()) {
        return Error(field, "\"" + event + "\" names stream " + hc.stream +
                                ", which is not a source (sources: " + Join(streams) + ")");
      }
      if (!ValidateEventType(hc.type).ok()) {
        return Error(field,
                     "\"" + hc.type + "\" is not an event type ([A-Za-z][A-Za-z0-9._-]{0,127})");
      }
      if (auto st = String(h, p, "sql", &hc.sql, true); !st.ok()) return st;
      int line = 1;
      auto stmts = ParseSql(hc.sql, dialect(), &line);
      if (!stmts.ok()) return c_.SqlError(p + "/sql", line, stmts.status().message());
      if (stmts->empty()) return Error(p + "/sql", "holds no statement");
      for (const auto& stmt : *stmts) {
        for (const auto& name : stmt.parameters) {
          auto param = EventParameter::Parse(name);
          if (!param.ok()) return c_.SqlError(p + "/sql", stmt.line, param.status().message());
        }
      }
      c_.handlers.push_back(std::move(hc));
    }
    for (auto& src : c_.sources) {
      for (const auto& h : c_.handlers) {
        if (h.stream != src.stream) continue;
        bool listed = std::find(src.types.begin(), src.types.end(), h.type) != src.types.end();
        if (!src.types_configured && !listed) src.types.push_back(h.type);
        if (src.types_configured && !listed) {
          c_.warnings.push_back(c_.doc.Warning(
              h.pointer, "the handler's type " + h.type + " is not in the types of source " +
                             src.stream + " (" + Join(src.types) + "), so it never runs"));
        }
      }
    }
    return Status::Ok();
  }

  Status Queries() {
    auto it = root().find("queries");
    if (it == root().end() || it->is_null()) return Status::Ok();
    if (!it->is_object()) return Error("/queries", "must be a mapping of name: SQL");
    static const std::regex kName("^[a-z][a-z0-9_-]{0,62}$");
    static const std::regex kParam("^[A-Za-z_][A-Za-z0-9_]*$");
    for (const auto& [name, sql] : it->items()) {
      std::string p = "/queries/" + EscapePointerToken(name);
      if (!std::regex_match(name, kName)) {
        return Error(p, "query name \"" + name + "\" must match [a-z][a-z0-9_-]{0,62}");
      }
      if (!sql.is_string() || sql.get<std::string>().empty()) {
        return Error(p, "must be the SQL of the query");
      }
      QueryConfig q{name, sql.get<std::string>(), p};
      int line = 1;
      auto stmts = ParseSql(q.sql, dialect(), &line);
      if (!stmts.ok()) return c_.SqlError(p, line, stmts.status().message());
      if (stmts->size() != 1) return Error(p, "a query must be exactly one statement");
      for (const auto& param : stmts->front().parameters) {
        if (!std::regex_match(param, kParam)) {
          return c_.SqlError(p, stmts->front().line,
                             ":" + param +
                                 " is not a query parameter name; use :name with letters, digits "
                                 "and _ (it is read from ?name= in the request)");
        }
      }
      c_.queries.push_back(std::move(q));
    }
    return Status::Ok();
  }

  Status Batch() {
    auto it = root().find("batch");
    if (it == root().end() || it->is_null()) return Status::Ok();
    if (auto st = Keys(*it, "/batch", {"maxEvents", "maxDelay"}); !st.ok()) return st;
    if (auto m = it->find("maxEvents"); m != it->end() && !m->is_null()) {
      if (!m->is_number_integer() || m->get<int64_t>() < 1 || m->get<int64_t>() > 10000) {
        return Error("/batch/maxEvents", "must be an integer from 1 to 10000");
      }
      c_.max_batch_events = static_cast<int>(m->get<int64_t>());
    }
    std::string delay;
    if (auto st = String(*it, "/batch", "maxDelay", &delay); !st.ok()) return st;
    if (!delay.empty()) {
      auto d = ParseDuration(delay);
      if (!d.ok()) return Error("/batch/maxDelay", d.status().message());
      if (*d > std::chrono::hours(1)) return Error("/batch/maxDelay", "must be at most 1h");
      c_.max_batch_delay = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
    }
    return Status::Ok();
  }

  Status OnErrorField() {
    std::string v;
    if (auto st = String(root(), "", "onError", &v); !st.ok()) return st;
    if (v.empty() || v == "stop") {
      c_.on_error = OnError::kStop;
    } else if (v == "skip") {
      c_.on_error = OnError::kSkip;
    } else {
      return Error("/onError", "\"" + v + "\" is not one of stop, skip");
    }
    return Status::Ok();
  }

  Status Replicas() {
    auto it = root().find("replicas");
    if (it == root().end() || it->is_null()) return Status::Ok();
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > 5) {
      return Error("/replicas", "must be an integer from 1 to 5");
    }
    c_.replicas = static_cast<int>(it->get<int64_t>());
    if (c_.replicas > 1 && !c_.postgres) {
      return Error("/replicas",
                   "replicas > 1 needs a PostgreSQL target: standbys share its database, and an "
                   "SQLite file belongs to one pod");
    }
    return Status::Ok();
  }

  Status Image() {
    std::string image;  // the operator's business; accepted so a rendered spec loads as is
    return String(root(), "", "image", &image);
  }

  ConsolidatorConfig c_;
};

}  // namespace

Status ConsolidatorConfig::SqlError(const std::string& pointer, int sql_line,
                                    const std::string& message) const {
  auto it = doc.lines.find(pointer);
  if (it == doc.lines.end()) return Error(pointer, message);
  int line = it->second;
  // A block scalar ("sql: |") starts on the line after its key; a plain or quoted one on it.
  bool block = false;
  if (line >= 1 && static_cast<size_t>(line) <= source_lines.size()) {
    const std::string& text = source_lines[static_cast<size_t>(line) - 1];
    auto colon = text.find(':');
    auto value =
        colon == std::string::npos ? std::string::npos : text.find_first_not_of(" \t", colon + 1);
    block = value != std::string::npos && (text[value] == '|' || text[value] == '>');
  }
  line += block ? sql_line : sql_line - 1;
  std::string field = DottedPointer(pointer);
  ErrorContext ctx;
  ctx.rule = field;
  return Status::Invalid(doc.origin + ":" + std::to_string(line) + ": " + field + ": " + message,
                         ctx);
}

Result<ConsolidatorConfig> ParseConsolidatorConfig(const std::string& yaml,
                                                   const std::string& origin) {
  auto doc = ParseYaml(yaml, origin);
  if (!doc.ok()) return doc.status();
  return Parser(std::move(doc).value(), yaml).Parse();
}

Result<ConsolidatorConfig> LoadConsolidatorConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::Invalid("cannot read config file " + path);
  std::stringstream text;
  text << in.rdbuf();
  return ParseConsolidatorConfig(text.str(), path);
}

}  // namespace sidelog::consolidator
