#include "projection.h"

#include <algorithm>

namespace sidelog::consolidator {
namespace {

// The consolidator's own tables, in every slot next to the read model's.
constexpr const char* kTables = R"sql(
CREATE TABLE IF NOT EXISTS sidelog_checkpoints (
  source TEXT PRIMARY KEY,
  position BIGINT NOT NULL,
  "index" INTEGER NOT NULL,
  events BIGINT NOT NULL,
  updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sidelog_dead_letters (
  source TEXT NOT NULL,
  position BIGINT NOT NULL,
  "index" INTEGER NOT NULL,
  event_id TEXT NOT NULL,
  type TEXT NOT NULL,
  entity TEXT NOT NULL,
  error TEXT NOT NULL,
  event TEXT NOT NULL,
  failed_at TEXT NOT NULL,
  PRIMARY KEY (source, position, "index"));
CREATE TABLE IF NOT EXISTS sidelog_meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sidelog_sources (
  source TEXT PRIMARY KEY,
  identity TEXT NOT NULL,
  recorded_at TEXT NOT NULL);
)sql";

constexpr const char* kLoadCheckpoint =
    "SELECT position, \"index\", events FROM sidelog_checkpoints WHERE source = :source";
constexpr const char* kSaveCheckpoint =
    "INSERT INTO sidelog_checkpoints (source, position, \"index\", events, updated_at) "
    "VALUES (:source, :position, :index, :events, :now) ON CONFLICT (source) DO UPDATE SET "
    "position = excluded.position, \"index\" = excluded.\"index\", events = excluded.events, "
    "updated_at = excluded.updated_at";
constexpr const char* kLoadIdentity = "SELECT identity FROM sidelog_sources WHERE source = :source";
constexpr const char* kSaveIdentity =
    "INSERT INTO sidelog_sources (source, identity, recorded_at) VALUES (:source, :identity, :now) "
    "ON CONFLICT (source) DO UPDATE SET identity = excluded.identity, "
    "recorded_at = excluded.recorded_at";
constexpr const char* kSaveMeta =
    "INSERT INTO sidelog_meta (key, value) VALUES (:key, :value) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value";
constexpr const char* kSaveDeadLetter =
    "INSERT INTO sidelog_dead_letters (source, position, \"index\", event_id, type, entity, "
    "error, event, failed_at) VALUES (:source, :position, :index, :id, :type, :entity, :error, "
    ":event, :now)";

// Prepares one of the statements above, whose parameters are bound by name.
Result<std::unique_ptr<Statement>> PrepareInternal(Db& db, const std::string& sql,
                                                   std::vector<std::string>* names) {
  auto parsed = ParseSql(sql, db.dialect());
  if (!parsed.ok()) return parsed.status();
  *names = parsed->front().parameters;
  return db.Prepare(parsed->front().text, names->size());
}

std::vector<SqlValue> ByName(const std::vector<std::string>& names,
                             const std::map<std::string, SqlValue>& values) {
  std::vector<SqlValue> out;
  out.reserve(names.size());
  for (const auto& n : names) out.push_back(values.at(n));
  return out;
}

std::string EventText(const StoredEvent& e) {
  return "event " + e.id + " (" + e.stream + "/" + e.type + ", entity " + e.entity + ", version " +
         std::to_string(e.version) + ", position " + std::to_string(e.position) + "." +
         std::to_string(e.index) + ")";
}

}  // namespace

std::string ProjectionHashOf(const ConsolidatorConfig& config) {
  Json sources = Json::array(), handlers = Json::array();
  for (const auto& s : config.sources)
    sources.push_back({{"stream", s.stream}, {"types", s.types}});
  for (const auto& h : config.handlers) {
    handlers.push_back({{"event", h.stream + "/" + h.type}, {"sql", h.sql}});
  }
  return Sha256Hex(
      Json({{"sources", sources}, {"schema", config.schema}, {"handlers", handlers}}).dump());
}

Result<std::string> RecordedProjectionHash(Db& db) {
  auto stmt = db.Prepare("SELECT value FROM sidelog_meta WHERE key = 'projection'", 0);
  if (!stmt.ok()) {
    if (stmt.status().code() == Status::Code::kUnavailable) return stmt.status();
    return std::string();  // no such table yet
  }
  auto rows = (*stmt)->Query({}, 1);
  if (!rows.ok()) return rows.status();
  return rows->empty() ? std::string() : (*rows)[0].value("value", "");
}

Projection::Projection(const ConsolidatorConfig& config, Connect connect)
    : config_(config), connect_(std::move(connect)) {}

Result<std::unique_ptr<Projection>> Projection::Open(const ConsolidatorConfig& config,
                                                     Connect connect) {
  std::unique_ptr<Projection> p(new Projection(config, std::move(connect)));
  if (auto st = p->Prepare(true); !st.ok()) return st;
  return p;
}

void Projection::Disconnect() {
  // Statements go before the connection that prepared them.
  handlers_.clear();
  load_checkpoint_ = {};
  save_checkpoint_ = {};
  load_identity_ = {};
  save_identity_ = {};
  save_meta_ = {};
  save_dead_letter_ = {};
  db_.reset();
}

Status Projection::Prepare(bool at_start) {
  Disconnect();
  auto db = connect_();
  if (!db.ok()) return db.status();
  Db& d = **db;

  // The DDL runs in a transaction, so a failing script leaves nothing half-applied.
  if (auto st = d.Begin(); !st.ok()) return st;
  if (auto st = d.ExecScript(config_.schema); !st.ok()) {
    d.Rollback();
    if (st.code() == Status::Code::kUnavailable) return st;
    std::string hint = st.message().find("already exists") != std::string::npos
                           ? " (the schema runs at every start: write CREATE TABLE IF NOT "
                             "EXISTS and CREATE INDEX IF NOT EXISTS)"
                           : "";
    return config_.Error("/schema", "the DDL fails on " + std::string(DialectName(d.dialect())) +
                                        ": " + st.message() + hint);
  }
  if (auto st = d.ExecScript(kTables); !st.ok()) {
    d.Rollback();
    return st;
  }
  if (auto st = d.Commit(); !st.ok()) return st;

  // Built aside and kept only when everything prepares.
  std::map<std::pair<std::string, std::string>, std::vector<CompiledHandler>> handlers;
  for (const auto& h : config_.handlers) {
    auto parsed = ParseSql(h.sql, d.dialect());
    if (!parsed.ok()) return config_.Error(h.pointer + "/sql", parsed.status().message());
    const bool several = parsed->size() > 1;
    CompiledHandler compiled{&h, {}};
    int number = 0;
    for (const auto& stmt : *parsed) {
      ++number;
      auto prepared = d.Prepare(stmt.text, stmt.parameters.size());
      if (!prepared.ok()) {
        if (prepared.status().code() == Status::Code::kUnavailable) return prepared.status();
        std::string where = several ? "statement " + std::to_string(number) : "the statement";
        Status err = config_.SqlError(h.pointer + "/sql", stmt.line,
                                      where + " does not prepare: " + prepared.status().message());
        return at_start ? err : Status::Unavailable(err.message());
      }
      CompiledStatement cs;
      cs.statement = std::move(prepared).value();
      cs.number = number;
      for (const auto& name : stmt.parameters) {
        auto param = EventParameter::Parse(name);
        if (!param.ok()) return config_.Error(h.pointer + "/sql", param.status().message());
        cs.parameters.push_back(*param);
      }
      compiled.statements.push_back(std::move(cs));
    }
    handlers[{h.stream, h.type}].push_back(std::move(compiled));
  }
  InternalStatement load, save, dead, load_identity, save_identity, save_meta;

  for (auto [internal, sql] :
       {std::pair{&load, kLoadCheckpoint}, std::pair{&save, kSaveCheckpoint},
        std::pair{&dead, kSaveDeadLetter}, std::pair{&load_identity, kLoadIdentity},
        std::pair{&save_identity, kSaveIdentity}, std::pair{&save_meta, kSaveMeta}}) {
    auto prepared = PrepareInternal(d, sql, &internal->names);
    if (!prepared.ok()) {
      return Status::Unavailable("preparing the checkpoint statements: " +
                                 prepared.status().message());
    }
    internal->statement = std::move(prepared).value();
  }
  db_ = std::move(db).value();
  handlers_ = std::move(handlers);
  load_checkpoint_ = std::move(load);
  save_checkpoint_ = std::move(save);
  save_dead_letter_ = std::move(dead);
  load_identity_ = std::move(load_identity);
  save_identity_ = std::move(save_identity);
  save_meta_ = std::move(save_meta);
  return Status::Ok();
}

Status Projection::SaveMeta(const std::string& key, const std::string& value) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!db_) {
    if (auto st = Prepare(false); !st.ok()) return st;
  }
  auto st =
      save_meta_.statement->Execute(ByName(save_meta_.names, {{"key", key}, {"value", value}}));
  if (!st.ok() && db_->broken()) Disconnect();
  return st;
}

Result<std::string> Projection::LoadIdentity(const std::string& source) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!db_) {
    if (auto st = Prepare(false); !st.ok()) return st;
  }
  auto rows =
      load_identity_.statement->Query(ByName(load_identity_.names, {{"source", source}}), 1);
  if (!rows.ok()) {
    if (db_->broken()) Disconnect();
    return Status::Unavailable("reading the identity of " + source + ": " +
                               rows.status().message());
  }
  return rows->empty() ? std::string() : (*rows)[0].at("identity").get<std::string>();
}

Status Projection::SaveIdentity(const std::string& source, const std::string& identity) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!db_) {
    if (auto st = Prepare(false); !st.ok()) return st;
  }
  auto st = save_identity_.statement->Execute(
      ByName(save_identity_.names,
             {{"source", source}, {"identity", identity}, {"now", FormatTime(NowMicros())}}));
  if (!st.ok() && db_->broken()) Disconnect();
  return st;
}

Result<Checkpoint> Projection::LoadCheckpoint(const std::string& source) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!db_) {
    if (auto st = Prepare(false); !st.ok()) return st;
  }
  auto rows =
      load_checkpoint_.statement->Query(ByName(load_checkpoint_.names, {{"source", source}}), 1);
  if (!rows.ok()) {
    if (db_->broken()) Disconnect();
    return Status::Unavailable("reading the checkpoint of " + source + ": " +
                               rows.status().message());
  }
  Checkpoint cp;
  if (!rows->empty()) {
    const Json& r = (*rows)[0];
    cp.cursor.position = r.at("position").get<int64_t>();
    cp.cursor.index = static_cast<int32_t>(r.at("index").get<int64_t>());
    cp.events = r.at("events").get<int64_t>();
  }
  return cp;
}

bool Projection::Wanted(const StoredEvent& event) const {
  for (const auto& s : config_.sources) {
    if (s.stream == event.stream) {
      return std::find(s.types.begin(), s.types.end(), event.type) != s.types.end();
    }
  }
  return false;
}

Status Projection::RunHandlers(const StoredEvent& event, bool* handled) {
  *handled = false;
  if (!Wanted(event)) return Status::Ok();
  auto it = handlers_.find({event.stream, event.type});
  if (it == handlers_.end()) return Status::Ok();
  *handled = true;
  for (auto& h : it->second) {
    for (auto& s : h.statements) {
      std::vector<SqlValue> values;
      values.reserve(s.parameters.size());
      for (const auto& p : s.parameters) values.push_back(p.ValueFor(event));
      if (auto st = s.statement->Execute(values); !st.ok()) {
        ErrorContext ctx;
        ctx.stream = event.stream;
        ctx.entity = event.entity;
        ctx.current_version = event.version;
        ctx.rule = DottedPointer(h.config->pointer) + ".sql";
        std::string which =
            h.statements.size() > 1 ? ", statement " + std::to_string(s.number) : std::string();
        return Status(st.code(),
                      "handler " + event.stream + "/" + event.type + which + " failed on " +
                          EventText(event) + ": " + st.message(),
                      ctx);
      }
    }
  }
  return Status::Ok();
}

Status Projection::Commit(const Batch& batch, size_t from, size_t to, const DeadLetter* dead,
                          const Checkpoint& checkpoint, size_t* failed, int64_t* handled) {
  *handled = 0;
  if (auto st = db_->Begin(); !st.ok()) return st;
  for (size_t i = from; i < to; ++i) {
    bool ran = false;
    if (auto st = RunHandlers(batch.events[i], &ran); !st.ok()) {
      db_->Rollback();
      *failed = i;
      return st;
    }
    if (ran) ++*handled;
  }
  const std::string now = FormatTime(NowMicros());
  if (dead) {
    const StoredEvent& e = *dead->event;
    auto st = save_dead_letter_.statement->Execute(
        ByName(save_dead_letter_.names, {{"source", batch.source},
                                         {"position", e.position},
                                         {"index", static_cast<int64_t>(e.index)},
                                         {"id", e.id},
                                         {"type", e.type},
                                         {"entity", e.entity},
                                         {"error", dead->error},
                                         {"event", ToCloudEvent(e).dump()},
                                         {"now", now}}));
    if (!st.ok()) {
      db_->Rollback();
      return st;
    }
  }
  auto st = save_checkpoint_.statement->Execute(
      ByName(save_checkpoint_.names, {{"source", batch.source},
                                      {"position", checkpoint.cursor.position},
                                      {"index", static_cast<int64_t>(checkpoint.cursor.index)},
                                      {"events", checkpoint.events},
                                      {"now", now}}));
  if (!st.ok()) {
    db_->Rollback();
    return st;
  }
  return db_->Commit();
}

ApplyResult Projection::Apply(const Batch& batch, const Checkpoint& before) {
  std::lock_guard<std::mutex> lock(mu_);
  ApplyResult r;
  r.checkpoint = before;
  if (!db_) {
    if (auto st = Prepare(false); !st.ok()) {
      r.error = st;
      return r;
    }
  }
  const size_t n = batch.events.size();
  auto transient = [&](const Status& st) {
    if (db_ && db_->broken()) Disconnect();
    r.error = st.code() == Status::Code::kRejected ? Status::Unavailable(st.message()) : st;
    return r;
  };
  size_t from = 0;
  for (;;) {
    size_t failed = n;
    int64_t handled = 0;
    Checkpoint all{batch.end, before.events + static_cast<int64_t>(n)};
    Status st = Commit(batch, from, n, nullptr, all, &failed, &handled);
    if (st.ok()) {
      r.checkpoint = all;
      r.handled += handled;
      r.skipped = static_cast<int64_t>(n) - r.handled - r.dead_lettered;
      return r;
    }
    if (failed == n || st.code() != Status::Code::kRejected || db_->broken()) {
      return transient(st);
    }
    const StoredEvent& bad = batch.events[failed];
    if (config_.on_error == OnError::kSkip) {
      DeadLetter dead{&bad, st.message()};
      Checkpoint past{Cursor{bad.position, bad.index},
                      before.events + static_cast<int64_t>(failed) + 1};
      size_t failed_again = n;
      Status st2 = Commit(batch, from, failed, &dead, past, &failed_again, &handled);
      if (!st2.ok()) return transient(st2);
      r.checkpoint = past;
      r.handled += handled;
      ++r.dead_lettered;
      from = failed + 1;
      continue;
    }
    // onError: stop. Keep the events before the failing one, then stop at it.
    if (failed > from) {
      const StoredEvent& last = batch.events[failed - 1];
      Checkpoint upto{Cursor{last.position, last.index},
                      before.events + static_cast<int64_t>(failed)};
      size_t failed_again = n;
      Status st2 = Commit(batch, from, failed, nullptr, upto, &failed_again, &handled);
      if (!st2.ok()) return transient(st2);
      r.checkpoint = upto;
      r.handled += handled;
    }
    r.skipped = static_cast<int64_t>(failed) - r.handled - r.dead_lettered;
    r.error = st;
    r.failed_event = bad;
    return r;
  }
}

}  // namespace sidelog::consolidator
