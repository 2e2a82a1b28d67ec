// SqliteDb: a Db over one libsqlite3 connection (the only door to sqlite3 in the consolidator).
// Opens in WAL mode with synchronous=NORMAL: the checkpoint commits in the same transaction as
// the rows, so a lost tail after a power cut rolls both back together and is replayed.
// A read-only connection sets PRAGMA query_only, so the database itself refuses writes.
#pragma once

#include <memory>
#include <string>

#include "db.h"

namespace sidelog::consolidator {

// Opens (creating it when read-write and missing) the database file at `path`. Unavailable
// with SQLite's message when it cannot be opened.
Result<std::unique_ptr<Db>> OpenSqlite(const std::string& path, Access access);

}  // namespace sidelog::consolidator
