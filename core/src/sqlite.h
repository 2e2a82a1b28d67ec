// The only door to libsqlite3: RAII handles for a connection and a prepared statement, with
// errors as Status. Not thread-safe: one Db per thread at a time.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "sidelog/status.h"

namespace sidelog::sqlite {

class Stmt {
 public:
  Stmt() = default;
  explicit Stmt(sqlite3_stmt* s) : stmt_(s) {}
  Stmt(Stmt&& o) noexcept : stmt_(o.stmt_) { o.stmt_ = nullptr; }
  Stmt& operator=(Stmt&& o) noexcept {
    if (this != &o) {
      sqlite3_finalize(stmt_);
      stmt_ = o.stmt_;
      o.stmt_ = nullptr;
    }
    return *this;
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(stmt_); }

  // Binds are 1-based, as in SQLite. Text and blobs are copied (SQLITE_TRANSIENT).
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindNull(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }

  // SQLITE_ROW, SQLITE_DONE, or an error code.
  int Step() { return sqlite3_step(stmt_); }
  // Runs to completion; Internal on error.
  Status Exec();
  // Resets and clears bindings so the statement can be reused.
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string_view Text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string_view(p, sqlite3_column_bytes(stmt_, col)) : std::string_view();
  }
  std::string String(int col) const { return std::string(Text(col)); }
  sqlite3_stmt* get() const { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

class Db {
 public:
  // Opens (creating when missing) the database file. Invalid/Internal on failure.
  // `vfs`: the name of a registered VFS (wal_vfs.h), or nullptr for the default.
  static Result<std::unique_ptr<Db>> Open(const std::string& path, bool read_only,
                                          const char* vfs = nullptr);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Runs one or more statements without results.
  Status Exec(const std::string& sql);
  // Prepares a statement; Internal (with SQLite's message) on failure.
  Result<Stmt> Prepare(std::string_view sql);
  // A cached prepared statement, reset and ready to bind. The reference stays valid for the
  // Db's lifetime; do not hold it across another Cached() call with the same SQL.
  Stmt& Cached(const char* sql);

  std::string LastError() const { return sqlite3_errmsg(db_); }
  sqlite3* get() const { return db_; }

 private:
  explicit Db(sqlite3* db);
  struct Cache;
  sqlite3* db_;
  std::unique_ptr<Cache> cache_;
};

// A statement's error naming the operation: StorageFull when the disk is full, else Internal.
Status Error(const Db& db, const std::string& what);

}  // namespace sidelog::sqlite
