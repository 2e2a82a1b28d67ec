// The PostgreSQL Target (target.h): a schema, its rebuild twin, and a session advisory lock.
#include "postgres_db.h"
#include "target.h"

namespace sidelog::consolidator {
namespace {

class PostgresTargetImpl : public Target {
 public:
  explicit PostgresTargetImpl(PostgresTarget config) : config_(std::move(config)) {}

  Dialect dialect() const override { return Dialect::kPostgres; }

  Status Lock() override {
    auto db = ConnectPostgres(config_.connection, config_.schema, Access::kReadWrite, false);
    if (!db.ok()) return db.status();
    auto stmt = (*db)->Prepare(
        "SELECT pg_try_advisory_lock(hashtext('sidelog-consolidator/' || $1::text)) AS locked", 1);
    if (!stmt.ok()) return Status::Unavailable(stmt.status().message());
    auto rows = (*stmt)->Query({config_.schema}, 1);
    if (!rows.ok()) return Status::Unavailable(rows.status().message());
    if (rows->empty() || !(*rows)[0].value("locked", false)) {
      return Status::Conflict("another consolidator process folds into PostgreSQL schema " +
                              config_.schema + " (it holds the advisory lock)");
    }
    lock_ = std::move(db).value();  // the lock lives as long as this session
    return Status::Ok();
  }

  Status CheckLock() override {
    if (!lock_) return Status::Unavailable("no advisory lock is held");
    if (auto st = lock_->ExecScript("SELECT 1"); !st.ok() || lock_->broken()) {
      return Status::Unavailable("the session holding the advisory lock on schema " +
                                 config_.schema + " is gone: " + st.message());
    }
    return Status::Ok();
  }

  Result<std::unique_ptr<Db>> OpenWriter(Slot slot) override {
    return ConnectPostgres(config_.connection, SchemaOf(slot), Access::kReadWrite, true);
  }

  Result<std::unique_ptr<Db>> OpenReader() override {
    return ConnectPostgres(config_.connection, config_.schema, Access::kReadOnly, false);
  }

  Status ClearRebuild() override {
    auto db = ConnectPostgres(config_.connection, config_.schema, Access::kReadWrite, false);
    if (!db.ok()) return db.status();
    return (*db)->ExecScript("DROP SCHEMA IF EXISTS " + Quoted(Slot::kRebuild) + " CASCADE");
  }

  Status Swap() override {
    auto db = ConnectPostgres(config_.connection, config_.schema, Access::kReadWrite, false);
    if (!db.ok()) return db.status();
    const std::string live = Quoted(Slot::kLive), rebuild = Quoted(Slot::kRebuild),
                      old = QuotePostgresIdentifier(config_.schema + "_old");
    // One transaction: readers see the old schema or the new one, never neither.
    Status st = (*db)->ExecScript(
        "BEGIN; CREATE SCHEMA IF NOT EXISTS " + live + "; DROP SCHEMA IF EXISTS " + old +
        " CASCADE; ALTER SCHEMA " + live + " RENAME TO " + old + "; ALTER SCHEMA " + rebuild +
        " RENAME TO " + live + "; DROP SCHEMA " + old + " CASCADE; COMMIT;");
    if (!st.ok()) (*db)->Rollback();
    return st;
  }

  std::string Describe(Slot slot) const override { return "PostgreSQL schema " + SchemaOf(slot); }

 private:
  std::string SchemaOf(Slot slot) const {
    return slot == Slot::kLive ? config_.schema : config_.schema + "_rebuild";
  }
  std::string Quoted(Slot slot) const { return QuotePostgresIdentifier(SchemaOf(slot)); }

  PostgresTarget config_;
  std::unique_ptr<Db> lock_;
};

}  // namespace

std::unique_ptr<Target> NewPostgresTarget(const PostgresTarget& config) {
  return std::make_unique<PostgresTargetImpl>(config);
}

}  // namespace sidelog::consolidator
