#include "sidelog/subscription_store.h"

#include <functional>
#include <mutex>

#include "sqlite.h"

namespace sidelog {

namespace {

constexpr const char* kSchema = R"(
CREATE TABLE IF NOT EXISTS subscriptions (
  name TEXT PRIMARY KEY,
  position INTEGER NOT NULL DEFAULT 0,
  identity TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS acked (
  subscription TEXT NOT NULL,
  position INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  PRIMARY KEY (subscription, position, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parked (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  subscription TEXT NOT NULL,
  position INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  entity TEXT NOT NULL,
  event_id TEXT NOT NULL,
  type TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  parked_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS parked_by_subscription ON parked (subscription, id);
)";

ParkedEvent ParkedRow(const sqlite::Stmt& s) {
  ParkedEvent p;
  p.id = s.Int(0);
  p.subscription = s.String(1);
  p.key = {s.Int(2), static_cast<int32_t>(s.Int(3))};
  p.entity = s.String(4);
  p.event_id = s.String(5);
  p.type = s.String(6);
  p.attempts = static_cast<int>(s.Int(7));
  p.last_error = s.String(8);
  p.parked_at = s.Int(9);
  return p;
}

constexpr const char* kParkedColumns =
    "SELECT id, subscription, position, idx, entity, event_id, type, attempts, last_error, "
    "parked_at FROM parked ";

}  // namespace

class SubscriptionStore::Impl {
 public:
  std::mutex mu;
  std::unique_ptr<sqlite::Db> db;

  Status InTransaction(const std::function<Status()>& body) {
    if (auto s = db->Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
    Status s = body();
    if (!s.ok()) {
      (void)db->Exec("ROLLBACK");
      return s;
    }
    return db->Exec("COMMIT");
  }
};

SubscriptionStore::SubscriptionStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SubscriptionStore::~SubscriptionStore() = default;

Result<std::unique_ptr<SubscriptionStore>> SubscriptionStore::Open(const std::string& path) {
  auto db = sqlite::Db::Open(path, false);
  if (!db.ok()) return db.status();
  auto impl = std::make_unique<Impl>();
  impl->db = std::move(db).value();
  if (auto s = impl->db->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"); !s.ok()) {
    return Status::Internal("subscription store " + path + ": " + s.message());
  }
  if (auto s = impl->db->Exec(kSchema); !s.ok()) {
    return Status::Internal("subscription store " + path + ": " + s.message());
  }
  return std::unique_ptr<SubscriptionStore>(new SubscriptionStore(std::move(impl)));
}

Result<SubscriptionPosition> SubscriptionStore::Load(const std::string& subscription) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  SubscriptionPosition out;
  auto& s = impl_->db->Cached("SELECT position, identity FROM subscriptions WHERE name = ?");
  s.Bind(1, subscription);
  if (s.Step() == SQLITE_ROW) {
    out.position = s.Int(0);
    out.identity = s.String(1);
  }
  auto& a = impl_->db->Cached(
      "SELECT position, idx FROM acked WHERE subscription = ? AND position > ? ORDER BY 1, 2");
  a.Bind(1, subscription).Bind(2, out.position);
  int rc;
  while ((rc = a.Step()) == SQLITE_ROW) {
    out.acked.insert({a.Int(0), static_cast<int32_t>(a.Int(1))});
  }
  if (rc != SQLITE_DONE) return sqlite::Error(*impl_->db, "reading acked events");
  return out;
}

Status SubscriptionStore::Apply(const std::string& subscription, const Update& u) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto& db = *impl_->db;
  return impl_->InTransaction([&]() -> Status {
    auto& ensure = db.Cached("INSERT OR IGNORE INTO subscriptions (name) VALUES (?)");
    if (auto s = ensure.Bind(1, subscription).Exec(); !s.ok()) return s;
    if (u.position) {
      auto& p = db.Cached("UPDATE subscriptions SET position = ? WHERE name = ?");
      if (auto s = p.Bind(1, *u.position).Bind(2, subscription).Exec(); !s.ok()) return s;
      auto& d = db.Cached("DELETE FROM acked WHERE subscription = ? AND position <= ?");
      if (auto s = d.Bind(1, subscription).Bind(2, *u.position).Exec(); !s.ok()) return s;
    }
    if (u.identity) {
      auto& p = db.Cached("UPDATE subscriptions SET identity = ? WHERE name = ?");
      if (auto s = p.Bind(1, *u.identity).Bind(2, subscription).Exec(); !s.ok()) return s;
    }
    for (const auto& [pos, idx] : u.acked) {
      if (u.position && pos <= *u.position) continue;
      auto& a =
          db.Cached("INSERT OR IGNORE INTO acked (subscription, position, idx) VALUES (?,?,?)");
      if (auto s = a.Bind(1, subscription).Bind(2, pos).Bind(3, idx).Exec(); !s.ok()) return s;
    }
    for (const auto& p : u.park) {
      auto& a = db.Cached(
          "INSERT INTO parked (subscription, position, idx, entity, event_id, type, attempts, "
          "last_error, parked_at) VALUES (?,?,?,?,?,?,?,?,?)");
      a.Bind(1, subscription).Bind(2, p.key.first).Bind(3, p.key.second).Bind(4, p.entity);
      a.Bind(5, p.event_id).Bind(6, p.type).Bind(7, p.attempts).Bind(8, p.last_error);
      if (auto s = a.Bind(9, p.parked_at).Exec(); !s.ok()) return s;
    }
    for (int64_t id : u.unpark) {
      auto& d = db.Cached("DELETE FROM parked WHERE subscription = ? AND id = ?");
      if (auto s = d.Bind(1, subscription).Bind(2, id).Exec(); !s.ok()) return s;
    }
    for (const auto& p : u.reparked) {
      auto& r = db.Cached(
          "UPDATE parked SET attempts = ?, last_error = ?, parked_at = ? WHERE subscription = ? "
          "AND id = ?");
      r.Bind(1, p.attempts).Bind(2, p.last_error).Bind(3, p.parked_at).Bind(4, subscription);
      if (auto s = r.Bind(5, p.id).Exec(); !s.ok()) return s;
    }
    return Status::Ok();
  });
}

Result<std::vector<ParkedEvent>> SubscriptionStore::Parked(const std::string& subscription,
                                                           int64_t after, int limit) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  static const std::string sql =
      std::string(kParkedColumns) + "WHERE subscription = ? AND id > ? ORDER BY id LIMIT ?";
  auto& s = impl_->db->Cached(sql.c_str());
  s.Bind(1, subscription).Bind(2, after).Bind(3, limit);
  std::vector<ParkedEvent> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back(ParkedRow(s));
  if (rc != SQLITE_DONE) return sqlite::Error(*impl_->db, "reading parked events");
  return out;
}

Result<std::optional<ParkedEvent>> SubscriptionStore::FindParked(const std::string& subscription,
                                                                 int64_t id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  static const std::string sql = std::string(kParkedColumns) + "WHERE subscription = ? AND id = ?";
  auto& s = impl_->db->Cached(sql.c_str());
  s.Bind(1, subscription).Bind(2, id);
  int rc = s.Step();
  if (rc == SQLITE_ROW) return std::optional<ParkedEvent>(ParkedRow(s));
  if (rc != SQLITE_DONE) return sqlite::Error(*impl_->db, "reading a parked event");
  return std::optional<ParkedEvent>();
}

int64_t SubscriptionStore::ParkedCount(const std::string& subscription) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto& s = impl_->db->Cached("SELECT count(*) FROM parked WHERE subscription = ?");
  s.Bind(1, subscription);
  return s.Step() == SQLITE_ROW ? s.Int(0) : 0;
}

Status SubscriptionStore::Discard(const std::string& subscription, int64_t id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto& s = impl_->db->Cached("DELETE FROM parked WHERE subscription = ? AND id = ?");
  if (auto st = s.Bind(1, subscription).Bind(2, id).Exec(); !st.ok()) return st;
  if (sqlite3_changes(impl_->db->get()) == 0) {
    return Status::NotFound("subscription " + subscription + " has no parked event " +
                            std::to_string(id));
  }
  return Status::Ok();
}

Status SubscriptionStore::Reset(const std::string& subscription) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->InTransaction([&]() -> Status {
    auto& a = impl_->db->Cached("DELETE FROM acked WHERE subscription = ?");
    if (auto s = a.Bind(1, subscription).Exec(); !s.ok()) return s;
    auto& d = impl_->db->Cached("DELETE FROM subscriptions WHERE name = ?");
    return d.Bind(1, subscription).Exec();
  });
}

}  // namespace sidelog
