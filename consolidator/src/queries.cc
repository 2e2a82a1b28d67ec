#include "queries.h"

#include "sql_template.h"

namespace sidelog::consolidator {
namespace {

// SQLite compares by type: 42 bound as text would not equal an INTEGER 42. A canonical decimal
// integer binds as an integer, which SQLite turns back into the same text for TEXT columns.
// Other values bind as text; PostgreSQL infers every parameter's type from the SQL anyway.
SqlValue ParamValue(const std::string& v, Dialect dialect) {
  if (dialect == Dialect::kSqlite && !v.empty() && v.size() <= 18) {
    size_t digits = v[0] == '-' ? 1 : 0;
    bool canonical = v.size() > digits &&
                     v.find_first_not_of("0123456789", digits) == std::string::npos &&
                     (v[digits] != '0' || v.size() == digits + 1) && v != "-0";
    if (canonical) return static_cast<int64_t>(std::stoll(v));
  }
  return v;
}

Status MissingParameter(const std::string& query, const std::string& parameter) {
  return Status::Invalid("query " + query + " needs the parameter " + parameter + ": ?" +
                         parameter + "=value");
}

}  // namespace

Queries::Queries(const ConsolidatorConfig& config, Target* target, size_t max_connections)
    : config_(config), target_(target), max_connections_(max_connections) {
  for (const auto& q : config.queries) {
    auto parsed = ParseSql(q.sql, target->dialect());
    if (!parsed.ok() || parsed->size() != 1) continue;  // the config loader refused these
    queries_[q.name] =
        Query{&q, parsed->front().text, parsed->front().parameters, parsed->front().line};
  }
}

Queries::~Queries() { idle_.clear(); }

Result<std::unique_ptr<Queries::Reader>> Queries::OpenReader() {
  auto db = target_->OpenReader();
  if (!db.ok()) return db.status();
  auto reader = std::make_unique<Reader>();
  reader->db = std::move(db).value();
  for (const auto& [name, q] : queries_) {
    auto stmt = reader->db->Prepare(q.text, q.parameters.size());
    if (!stmt.ok()) {
      if (stmt.status().code() == Status::Code::kUnavailable) return stmt.status();
      Status err = config_.SqlError(q.config->pointer, q.line,
                                    "the query does not prepare: " + stmt.status().message());
      if (!lenient_) return err;
      reader->unprepared[name] = err.message();
      continue;
    }
    reader->statements[name] = std::move(stmt).value();
  }
  return reader;
}

Status Queries::Check() {
  std::shared_lock<std::shared_mutex> lock(swap_);
  auto reader = OpenReader();
  if (!reader.ok()) return reader.status();
  std::lock_guard<std::mutex> l(mu_);
  ++open_;
  idle_.push_back(std::move(reader).value());
  return Status::Ok();
}

std::unique_ptr<Queries::Reader> Queries::Acquire(Status* error) {
  std::unique_lock<std::mutex> lock(mu_);
  released_.wait(lock, [&] { return !idle_.empty() || open_ < max_connections_; });
  if (!idle_.empty()) {
    auto r = std::move(idle_.back());
    idle_.pop_back();
    return r;
  }
  ++open_;
  lock.unlock();
  auto r = OpenReader();
  if (!r.ok()) {
    *error = r.status();
    std::lock_guard<std::mutex> l(mu_);
    --open_;
    released_.notify_one();
    return nullptr;
  }
  return std::move(r).value();
}

void Queries::Release(std::unique_ptr<Reader> reader) {
  std::lock_guard<std::mutex> lock(mu_);
  if (reader && !reader->db->broken()) {
    idle_.push_back(std::move(reader));
  } else {
    --open_;
  }
  released_.notify_one();
}

Result<Json> Queries::Run(const std::string& name, const std::map<std::string, std::string>& params,
                          size_t max_rows) {
  auto it = queries_.find(name);
  if (it == queries_.end()) {
    ErrorContext ctx;
    ctx.rule = "queries";
    return Status::NotFound("no query named \"" + name.substr(0, 64) + "\"", ctx);
  }
  const Query& q = it->second;
  std::vector<SqlValue> values;
  for (const auto& p : q.parameters) {
    auto v = params.find(p);
    if (v == params.end()) return MissingParameter(name, p);
    values.push_back(ParamValue(v->second, target_->dialect()));
  }
  for (const auto& [k, v] : params) {
    if (std::find(q.parameters.begin(), q.parameters.end(), k) == q.parameters.end()) {
      std::string takes;
      for (const auto& p : q.parameters) takes += (takes.empty() ? "" : ", ") + p;
      return Status::Invalid("query " + name + " takes no parameter " + k.substr(0, 64) +
                             (takes.empty() ? " (it takes none)" : " (it takes " + takes + ")"));
    }
  }

  std::shared_lock<std::shared_mutex> lock(swap_);
  Status error;
  auto reader = Acquire(&error);
  if (!reader) return error;
  Result<Json> rows = Status::Internal("not run");
  if (auto st = reader->db->Begin(); !st.ok()) {
    rows = st;
  } else if (auto u = reader->unprepared.find(name); u != reader->unprepared.end()) {
    reader->db->Rollback();
    rows = Status::Unavailable("query " + name +
                               " cannot run on the current read model until the rebuild swaps "
                               "in: " +
                               u->second);
  } else {
    rows = reader->statements.at(name)->Query(values, max_rows);
    if (rows.ok()) {
      if (auto c = reader->db->Commit(); !c.ok()) rows = c;
    } else {
      reader->db->Rollback();
    }
  }
  Release(std::move(reader));
  if (!rows.ok()) {
    const Status& st = rows.status();
    if (st.code() == Status::Code::kRejected) {
      return Status::Internal("query " + name + " failed: " + st.message());
    }
    return st;
  }
  return Json{{"rows", std::move(rows).value()}};
}

Json Queries::List() const {
  Json out = Json::array();
  for (const auto& [name, q] : queries_) {
    out.push_back({{"name", name}, {"parameters", q.parameters}});
  }
  return out;
}

void Queries::SetLenient(bool lenient) {
  auto paused = Pause();  // readers prepared the other way are closed
  lenient_ = lenient;
}

std::unique_lock<std::shared_mutex> Queries::Pause() {
  std::unique_lock<std::shared_mutex> lock(swap_);
  std::lock_guard<std::mutex> l(mu_);
  open_ -= idle_.size();
  idle_.clear();
  return lock;
}

}  // namespace sidelog::consolidator
