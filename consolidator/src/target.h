// Target: where a read model lives, and the two places ("slots") it can be built in:
//
//   live     what queries read and the followers fold into
//   rebuild  a fresh, empty copy that a rebuild folds from position 0; Swap() makes it live
//            atomically, so readers see the old view, then the complete new one
//
// SQLite: the live slot is the file at `path`, the rebuild slot `path.rebuild`; Swap renames
// the rebuild file over the live one. PostgreSQL: the live slot is the schema, the rebuild slot
// `<schema>_rebuild`; Swap renames both schemas in one transaction.
//
// One process folds into a target at a time: Lock() takes an exclusive lock (flock on
// `path.lock`; a session advisory lock in PostgreSQL) held until the Target is destroyed.
// OpenWriter and OpenReader are safe from any thread; Lock, ClearRebuild and Swap belong to the
// owner (the Consolidator's supervisor).
#pragma once

#include <memory>
#include <string>

#include "config.h"
#include "db.h"

namespace sidelog::consolidator {

enum class Slot { kLive, kRebuild };

class Target {
 public:
  // Nothing is opened yet.
  static std::unique_ptr<Target> FromConfig(const ConsolidatorConfig& config);
  virtual ~Target() = default;

  virtual Dialect dialect() const = 0;

  // Takes the single-writer lock. Conflict when another process holds it; Unavailable when
  // the database cannot be reached.
  virtual Status Lock() = 0;
  // Ok while the lock taken by Lock() is still held. PostgreSQL: the lock's session still
  // answers (a lost session has released it, and a standby may be folding already). A file
  // lock cannot be lost.
  virtual Status CheckLock() { return Status::Ok(); }

  // A read-write connection to a slot, creating the file or schema when missing.
  virtual Result<std::unique_ptr<Db>> OpenWriter(Slot slot) = 0;

  // A read-only connection to the live slot.
  virtual Result<std::unique_ptr<Db>> OpenReader() = 0;

  // Removes whatever the rebuild slot holds, leaving it empty.
  virtual Status ClearRebuild() = 0;

  // Makes the rebuild slot live; the old live content is dropped. Callers close every
  // connection to both slots first (SQLite renames files under them).
  virtual Status Swap() = 0;

  // "SQLite file /data/x.db", "PostgreSQL schema order_summary" (for logs and status).
  virtual std::string Describe(Slot slot) const = 0;
};

std::unique_ptr<Target> NewSqliteTarget(const SqliteTarget& config);
std::unique_ptr<Target> NewPostgresTarget(const PostgresTarget& config);

}  // namespace sidelog::consolidator
