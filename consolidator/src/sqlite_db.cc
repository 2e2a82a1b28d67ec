#include "sqlite_db.h"

#include <sqlite3.h>

#include <cmath>

namespace sidelog::consolidator {
namespace {

// Busy, locked, I/O and full-disk errors pass; constraint, type and SQL errors do not.
bool Transient(int code) {
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
      return true;
    default:
      return false;
  }
}

Status ErrorOf(sqlite3* db, int code) {
  std::string msg = sqlite3_errmsg(db);
  if (Transient(code)) return Status::Unavailable("SQLite: " + msg);
  return Status::Rejected("SQLite: " + msg);
}

class SqliteStatement : public Statement {
 public:
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~SqliteStatement() override { sqlite3_finalize(stmt_); }

  Status Execute(const std::vector<SqlValue>& params) override {
    Bind(params);
    int rc;
    while ((rc = sqlite3_step(stmt_)) == SQLITE_ROW) {
    }
    Status st = rc == SQLITE_DONE ? Status::Ok() : ErrorOf(db_, rc);
    sqlite3_reset(stmt_);
    return st;
  }

  Result<Json> Query(const std::vector<SqlValue>& params, size_t max_rows) override {
    Bind(params);
    Json rows = Json::array();
    const int n = sqlite3_column_count(stmt_);
    int rc;
    while ((rc = sqlite3_step(stmt_)) == SQLITE_ROW) {
      if (rows.size() == max_rows) {
        sqlite3_reset(stmt_);
        return Status::TooLarge("the query returned more than " + std::to_string(max_rows) +
                                " rows; narrow it or add a LIMIT");
      }
      Json row = Json::object();
      for (int c = 0; c < n; ++c) row[sqlite3_column_name(stmt_, c)] = Column(c);
      rows.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) {
      Status st = ErrorOf(db_, rc);
      sqlite3_reset(stmt_);
      return st;
    }
    sqlite3_reset(stmt_);
    return rows;
  }

 private:
  void Bind(const std::vector<SqlValue>& params) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    for (size_t i = 0; i < params.size(); ++i) {
      int k = static_cast<int>(i) + 1;
      const SqlValue& v = params[i];
      if (std::holds_alternative<int64_t>(v)) {
        sqlite3_bind_int64(stmt_, k, std::get<int64_t>(v));
      } else if (std::holds_alternative<double>(v)) {
        sqlite3_bind_double(stmt_, k, std::get<double>(v));
      } else if (std::holds_alternative<std::string>(v)) {
        const auto& s = std::get<std::string>(v);
        sqlite3_bind_text(stmt_, k, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
      } else {
        sqlite3_bind_null(stmt_, k);
      }
    }
  }

  Json Column(int c) const {
    switch (sqlite3_column_type(stmt_, c)) {
      case SQLITE_INTEGER:
        return sqlite3_column_int64(stmt_, c);
      case SQLITE_FLOAT: {
        double d = sqlite3_column_double(stmt_, c);
        return std::isfinite(d) ? Json(d) : Json(nullptr);
      }
      case SQLITE_TEXT:
      case SQLITE_BLOB: {
        auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, c));
        return std::string(p ? p : "", static_cast<size_t>(sqlite3_column_bytes(stmt_, c)));
      }
      default:
        return nullptr;
    }
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

class SqliteDb : public Db {
 public:
  SqliteDb(sqlite3* db, Access access) : db_(db), access_(access) {}
  ~SqliteDb() override { sqlite3_close_v2(db_); }

  Dialect dialect() const override { return Dialect::kSqlite; }

  Status ExecScript(const std::string& sql) override {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    if (rc == SQLITE_OK) return Status::Ok();
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    if (Transient(rc)) return Status::Unavailable("SQLite: " + msg);
    return Status::Rejected("SQLite: " + msg);
  }

  Result<std::unique_ptr<Statement>> Prepare(const std::string& sql, size_t param_count) override {
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK) {
      Status st = ErrorOf(db_, rc);
      if (st.code() == Status::Code::kUnavailable) return st;
      return Status::Invalid(st.message());
    }
    if (stmt == nullptr) return Status::Invalid("SQLite: the statement is empty");
    auto out = std::make_unique<SqliteStatement>(db_, stmt);
    if (tail != nullptr && std::string(tail).find_first_not_of(" \t\r\n") != std::string::npos) {
      return Status::Invalid("SQLite: only one statement may be prepared at a time");
    }
    if (static_cast<size_t>(sqlite3_bind_parameter_count(stmt)) > param_count) {
      return Status::Invalid("SQLite: the statement has more parameters than it names");
    }
    if (access_ == Access::kReadOnly && !sqlite3_stmt_readonly(stmt)) {
      return Status::Invalid("SQLite: a query must only read, and this statement writes");
    }
    return std::unique_ptr<Statement>(std::move(out));
  }

  Status Begin() override {
    return ExecScript(access_ == Access::kReadOnly ? "BEGIN" : "BEGIN IMMEDIATE");
  }
  Status Commit() override { return ExecScript("COMMIT"); }
  void Rollback() override {
    if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  bool broken() const override { return false; }

 private:
  sqlite3* db_;
  Access access_;
};

}  // namespace

Result<std::unique_ptr<Db>> OpenSqlite(const std::string& path, Access access) {
  sqlite3* raw = nullptr;
  int flags = access == Access::kReadOnly ? SQLITE_OPEN_READWRITE  // query_only refuses writes
                                          : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    sqlite3_close_v2(raw);
    return Status::Unavailable("cannot open the SQLite database " + path + ": " + msg);
  }
  auto db = std::make_unique<SqliteDb>(raw, access);
  sqlite3_busy_timeout(raw, 5000);
  const char* setup = access == Access::kReadOnly
                          ? "PRAGMA query_only = 1;"
                          : "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;";
  if (auto st = db->ExecScript(setup); !st.ok()) {
    return Status::Unavailable("cannot set up the SQLite database " + path + ": " + st.message());
  }
  return std::unique_ptr<Db>(std::move(db));
}

}  // namespace sidelog::consolidator
