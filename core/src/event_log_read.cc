// EventLog: reads, on pooled read-only connections, and folding from snapshots.
#include "event_log_impl.h"

namespace sidelog {

const char* const kEventColumns =
    "entity, version, position, idx, id, type, time, status, source, data, metadata";

StoredEvent DecodeEvent(const sqlite::Stmt& row, const std::string& stream,
                        const std::string& entity_or_empty, int c) {
  StoredEvent e;
  e.stream = stream;
  e.entity = entity_or_empty.empty() ? row.String(c) : entity_or_empty;
  e.version = row.Int(c + 1);
  e.position = row.Int(c + 2);
  e.index = static_cast<int32_t>(row.Int(c + 3));
  e.id = row.String(c + 4);
  e.type = row.String(c + 5);
  e.time = row.Int(c + 6);
  e.state = row.String(c + 7);
  e.source = row.String(c + 8);
  e.data = Json::parse(row.Text(c + 9));
  if (!row.IsNull(c + 10)) e.metadata = Json::parse(row.Text(c + 10)).get<Metadata>();
  return e;
}

namespace {

Status UnknownStream(const std::string& stream) {
  ErrorContext ctx;
  ctx.stream = stream;
  return Status::NotFound("stream " + stream + " is not served here", ctx);
}

int ClampLimit(int limit) {
  if (limit <= 0) return 100;
  return std::min(limit, 1000);
}

}  // namespace

const StreamRuntime* EventLog::Impl::Find(const std::string& stream) const {
  auto it = streams_.find(stream);
  return it == streams_.end() ? nullptr : it->second.get();
}

Result<EventLog::Impl::Reader> EventLog::Impl::AcquireReader() const {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (!pool_.empty()) {
      auto db = std::move(pool_.back());
      pool_.pop_back();
      return Reader(this, std::move(db));
    }
  }
  auto db = sqlite::Db::Open(options_.path, true);
  if (!db.ok()) return db.status();
  return Reader(this, std::move(db).value());
}

EventLog::Impl::Reader::~Reader() {
  if (!db_) return;
  std::lock_guard<std::mutex> lock(impl_->pool_mu_);
  if (impl_->pool_.size() < 16) impl_->pool_.push_back(std::move(db_));
}

// Folds the entity up to `target_version` from the latest snapshot at or below it. Stored
// events are never re-validated (Mode::kReplay).
Result<EntityState> EventLog::Impl::Fold(sqlite::Db& db, const StreamRuntime& s,
                                         const std::string& entity, int64_t target_version) const {
  EntityState st = s.rules->Initial();
  auto& snap = db.Cached(
      "SELECT version, status, deleted, time, state FROM snapshots WHERE stream_id = ? AND "
      "entity = ? AND rules_hash = ? AND version <= ? ORDER BY version DESC LIMIT 1");
  snap.Bind(1, s.id).Bind(2, entity).Bind(3, s.rules->hash()).Bind(4, target_version);
  if (snap.Step() == SQLITE_ROW) {
    st.version = snap.Int(0);
    st.status = snap.String(1);
    st.deleted = snap.Int(2) != 0;
    st.updated_at = snap.Int(3);
    st.state = Json::parse(snap.Text(4));
  }
  snap.Reset();
  auto& q = db.Cached(
      "SELECT version, type, time, data FROM events WHERE stream_id = ? AND entity = ? AND "
      "version > ? AND version <= ? ORDER BY version");
  q.Bind(1, s.id).Bind(2, entity).Bind(3, st.version).Bind(4, target_version);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    Json data = Json::parse(q.Text(3));
    (void)s.rules->Apply(&st, q.String(1), data, Rules::Mode::kReplay);
    st.version = q.Int(0);
    st.updated_at = q.Int(2);
  }
  q.Reset();
  if (rc != SQLITE_DONE) return sqlite::Error(db, "folding " + entity);
  return st;
}

Result<EntityState> EventLog::Impl::State(const std::string& stream, const std::string& entity,
                                          const StateQuery& query) const {
  const StreamRuntime* s = Find(stream);
  if (s == nullptr) return UnknownStream(stream);
  ErrorContext ctx;
  ctx.stream = stream;
  ctx.entity = entity;
  auto reader = AcquireReader();
  if (!reader.ok()) return reader.status();
  auto& db = reader->db();
  if (auto b = reader->Begin(); !b.ok()) return b;
  struct EndTxn {
    Reader* r;
    ~EndTxn() { r->End(); }
  } end{&*reader};

  auto& head = db.Cached("SELECT version FROM entities WHERE stream_id = ? AND entity = ?");
  head.Bind(1, s->id).Bind(2, entity);
  int64_t current = 0;
  if (head.Step() == SQLITE_ROW) current = head.Int(0);
  head.Reset();
  if (current == 0) return Status::NotFound("entity " + entity + " has no events", ctx);
  ctx.current_version = current;

  int64_t target = current;
  if (query.version) {
    if (*query.version < 1) {
      ctx.rule = "version";
      return Status::Invalid("version must be at least 1", ctx);
    }
    if (*query.version > current) {
      return Status::NotFound("entity " + entity + " has no version " +
                                  std::to_string(*query.version) + " (it is at version " +
                                  std::to_string(current) + ")",
                              ctx);
    }
    target = *query.version;
  } else if (query.at) {
    auto& q = db.Cached(
        "SELECT version FROM events WHERE stream_id = ? AND entity = ? AND time <= ? "
        "ORDER BY version DESC LIMIT 1");
    q.Bind(1, s->id).Bind(2, entity).Bind(3, *query.at);
    target = q.Step() == SQLITE_ROW ? q.Int(0) : 0;
    q.Reset();
    if (target == 0) {
      return Status::NotFound("entity " + entity + " had no events at " + FormatTime(*query.at),
                              ctx);
    }
  }
  auto folded = Fold(db, *s, entity, target);
  if (!folded.ok()) return folded;
  if (folded->deleted) {
    ctx.rule = "deleted";
    return Status::Gone(
        "entity " + entity + " was deleted (its last version is " + std::to_string(current) + ")",
        ctx);
  }
  return folded;
}

Result<EntityEvents> EventLog::Impl::ReadEntity(const std::string& stream,
                                                const std::string& entity, int64_t from_version,
                                                int limit) const {
  const StreamRuntime* s = Find(stream);
  if (s == nullptr) return UnknownStream(stream);
  limit = ClampLimit(limit);
  auto reader = AcquireReader();
  if (!reader.ok()) return reader.status();
  auto& db = reader->db();
  if (auto b = reader->Begin(); !b.ok()) return b;
  struct EndTxn {
    Reader* r;
    ~EndTxn() { r->End(); }
  } end{&*reader};

  EntityEvents out;
  auto& head = db.Cached("SELECT version FROM entities WHERE stream_id = ? AND entity = ?");
  head.Bind(1, s->id).Bind(2, entity);
  if (head.Step() == SQLITE_ROW) out.version = head.Int(0);
  head.Reset();
  if (out.version == 0) {
    ErrorContext ctx;
    ctx.stream = stream;
    ctx.entity = entity;
    return Status::NotFound("entity " + entity + " has no events", ctx);
  }
  static const std::string kPage = std::string("SELECT ") + kEventColumns +
                                   " FROM events WHERE stream_id = ? AND entity = ? AND "
                                   "version >= ? ORDER BY version LIMIT ?";
  static const std::string kRest = std::string("SELECT ") + kEventColumns +
                                   " FROM events WHERE stream_id = ? AND entity = ? AND "
                                   "version > ? AND position = ? ORDER BY version";
  auto& page = db.Cached(kPage.c_str());
  page.Bind(1, s->id).Bind(2, entity).Bind(3, std::max<int64_t>(from_version, 1)).Bind(4, limit);
  while (page.Step() == SQLITE_ROW) out.events.push_back(DecodeEvent(page, stream, entity));
  page.Reset();
  if (static_cast<int>(out.events.size()) == limit) {
    // Never split a commit: finish the last one.
    auto& rest = db.Cached(kRest.c_str());
    rest.Bind(1, s->id)
        .Bind(2, entity)
        .Bind(3, out.events.back().version)
        .Bind(4, out.events.back().position);
    while (rest.Step() == SQLITE_ROW) out.events.push_back(DecodeEvent(rest, stream, entity));
    rest.Reset();
  }
  int64_t last =
      out.events.empty() ? std::max<int64_t>(from_version, 1) - 1 : out.events.back().version;
  if (last < out.version) out.next = last + 1;
  return out;
}

Result<StreamPage> EventLog::Impl::ReadStream(const std::string& stream, int64_t after, int limit,
                                              const std::set<std::string>& types) const {
  const StreamRuntime* s = Find(stream);
  if (s == nullptr) return UnknownStream(stream);
  limit = ClampLimit(limit);
  const int64_t watermark = s->watermark.load();
  StreamPage out;
  out.next = std::max(after, watermark);
  if (after >= watermark) return out;

  auto reader = AcquireReader();
  if (!reader.ok()) return reader.status();
  auto& db = reader->db();
  const std::string filter = types.empty() ? std::string() : Json(types).dump();
  // With a type filter the type is checked against a JSON array through json_each.
  static const std::string kAll = std::string("SELECT ") + kEventColumns +
                                  " FROM events WHERE stream_id = ? AND position > ? AND "
                                  "position <= ? ORDER BY position, idx LIMIT ?";
  static const std::string kTyped = std::string("SELECT ") + kEventColumns +
                                    " FROM events WHERE stream_id = ? AND position > ? AND "
                                    "position <= ? AND type IN (SELECT value FROM json_each(?)) "
                                    "ORDER BY position, idx LIMIT ?";
  static const std::string kRestAll = std::string("SELECT ") + kEventColumns +
                                      " FROM events WHERE stream_id = ? AND position = ? AND "
                                      "idx > ? ORDER BY idx";
  static const std::string kRestTyped = std::string("SELECT ") + kEventColumns +
                                        " FROM events WHERE stream_id = ? AND position = ? AND "
                                        "idx > ? AND type IN (SELECT value FROM json_each(?)) "
                                        "ORDER BY idx";
  auto& page = db.Cached(filter.empty() ? kAll.c_str() : kTyped.c_str());
  page.Bind(1, s->id).Bind(2, after).Bind(3, watermark);
  if (filter.empty()) {
    page.Bind(4, limit);
  } else {
    page.Bind(4, filter).Bind(5, limit);
  }
  int rc;
  while ((rc = page.Step()) == SQLITE_ROW) out.events.push_back(DecodeEvent(page, stream, ""));
  page.Reset();
  if (rc != SQLITE_DONE) return sqlite::Error(db, "reading stream " + stream);
  if (static_cast<int>(out.events.size()) < limit) return out;  // scanned up to the watermark
  auto& rest = db.Cached(filter.empty() ? kRestAll.c_str() : kRestTyped.c_str());
  rest.Bind(1, s->id).Bind(2, out.events.back().position).Bind(3, out.events.back().index);
  if (!filter.empty()) rest.Bind(4, filter);
  while (rest.Step() == SQLITE_ROW) out.events.push_back(DecodeEvent(rest, stream, ""));
  rest.Reset();
  out.next = out.events.back().position;
  return out;
}

Result<EntityList> EventLog::Impl::ListEntities(const std::string& stream,
                                                const std::string& prefix, const std::string& after,
                                                int limit) const {
  const StreamRuntime* s = Find(stream);
  if (s == nullptr) return UnknownStream(stream);
  limit = ClampLimit(limit);
  auto reader = AcquireReader();
  if (!reader.ok()) return reader.status();
  auto& db = reader->db();
  // Entity ids are printable ASCII (< 0x7f), so prefix + 0x7f bounds every id with the prefix.
  auto& q = db.Cached(
      "SELECT entity, version, deleted FROM entities WHERE stream_id = ? AND entity > ? AND "
      "entity >= ? AND entity < ? ORDER BY entity LIMIT ?");
  q.Bind(1, s->id).Bind(2, after).Bind(3, prefix).Bind(4, prefix + '\x7f').Bind(5, limit);
  EntityList out;
  while (q.Step() == SQLITE_ROW) {
    out.entities.push_back({q.String(0), q.Int(1), q.Int(2) != 0});
  }
  q.Reset();
  if (static_cast<int>(out.entities.size()) == limit) out.next = out.entities.back().id;
  return out;
}

// Public forwarding.

Result<EntityEvents> EventLog::ReadEntity(const std::string& stream, const std::string& entity,
                                          int64_t from_version, int limit) const {
  return impl_->ReadEntity(stream, entity, from_version, limit);
}

Result<StreamPage> EventLog::ReadStream(const std::string& stream, int64_t after, int limit,
                                        const std::set<std::string>& types) const {
  return impl_->ReadStream(stream, after, limit, types);
}

Result<EntityList> EventLog::ListEntities(const std::string& stream, const std::string& prefix,
                                          const std::string& after, int limit) const {
  return impl_->ListEntities(stream, prefix, after, limit);
}

Result<EntityState> EventLog::State(const std::string& stream, const std::string& entity,
                                    const StateQuery& query) const {
  return impl_->State(stream, entity, query);
}

}  // namespace sidelog
