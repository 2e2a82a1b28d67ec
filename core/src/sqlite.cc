#include "sqlite.h"

#include <mutex>
#include <unordered_map>

namespace sidelog::sqlite {

namespace {

// An error of `db`'s last call: StorageFull when the disk is full (SQLITE_FULL, which SQLite
// also answers for ENOSPC), else Internal.
Status Failure(sqlite3* db, std::string message) {
  if ((sqlite3_extended_errcode(db) & 0xff) == SQLITE_FULL) {
    ErrorContext ctx;
    ctx.reason = "DiskFull";
    ctx.retry_after_seconds = 5;
    return Status::StorageFull("the disk under the event log is full (" + message +
                                   "): free space under dataDir, then retry",
                               ctx);
  }
  return Status::Internal(std::move(message));
}

}  // namespace

struct Db::Cache {
  std::unordered_map<const char*, Stmt> stmts;
};

Status Stmt::Exec() {
  int rc;
  while ((rc = Step()) == SQLITE_ROW) {
  }
  if (rc != SQLITE_DONE) {
    sqlite3* db = sqlite3_db_handle(stmt_);
    return Failure(db, std::string("sqlite: ") + sqlite3_errmsg(db));
  }
  return Status::Ok();
}

Result<std::unique_ptr<Db>> Db::Open(const std::string& path, bool read_only, const char* vfs) {
  // Memory statistics cost a global mutex on every allocation; nothing here reads them. Only
  // possible before SQLite initializes (later it answers SQLITE_MISUSE, harmlessly).
  static std::once_flag once;
  std::call_once(once, [] { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
  sqlite3* raw = nullptr;
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, vfs);
  if (rc != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    sqlite3_close(raw);
    return Status::Internal("cannot open event log " + path + ": " + msg);
  }
  sqlite3_busy_timeout(raw, 5000);
  std::unique_ptr<Db> db(new Db(raw));
  return db;
}

Db::Db(sqlite3* db) : db_(db), cache_(std::make_unique<Cache>()) {}

Db::~Db() {
  cache_.reset();  // statements first
  sqlite3_close(db_);
}

Status Db::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return Failure(db_, "sqlite: " + msg);
  }
  return Status::Ok();
}

Result<Stmt> Db::Prepare(std::string_view sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &s, nullptr) != SQLITE_OK) {
    return Status::Internal("sqlite: cannot prepare \"" + std::string(sql.substr(0, 80)) +
                            "\": " + sqlite3_errmsg(db_));
  }
  return Stmt(s);
}

Stmt& Db::Cached(const char* sql) {
  auto it = cache_->stmts.find(sql);
  if (it == cache_->stmts.end()) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    it = cache_->stmts.emplace(sql, Stmt(s)).first;
  }
  it->second.Reset();
  return it->second;
}

Status Error(const Db& db, const std::string& what) {
  return Failure(db.get(), what + ": " + db.LastError());
}

}  // namespace sidelog::sqlite
