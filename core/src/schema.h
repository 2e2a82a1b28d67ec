// The event log's SQLite schema and its migrations (PRAGMA user_version).
#pragma once

#include "sqlite.h"

namespace sidelog::schema {

// The schema version this build writes.
constexpr int kVersion = 6;

// Brings the database from its user_version to `target` (kVersion; tests build older files
// with a lower one), one migration at a time, each in its own transaction. Fails (Internal)
// when the file is newer than this build.
Status Migrate(sqlite::Db& db, int target = kVersion);

}  // namespace sidelog::schema
