// EventLog: reads, on pooled read-only connections, and folding from snapshots.
#include "event_log_impl.h"

namespace sidelog {

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

// The entity's current version: its newest commit's (schema 3), 0 when it has none.
int64_t CurrentVersion(sqlite::Db& db, int64_t stream_id, const std::string& entity) {
  auto& head =
      db.Cached("SELECT max(last_version) FROM commits WHERE stream_id = ? AND entity = ?");
  head.Bind(1, stream_id).Bind(2, entity);
  const int64_t version = head.Step() == SQLITE_ROW ? head.Int(0) : 0;
  head.Reset();
  return version;
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
      "SELECT position, first_version, events, first_time FROM commits WHERE stream_id = ? AND "
      "entity = ? AND last_version > ? AND first_version <= ? ORDER BY last_version");
  q.Bind(1, s.id).Bind(2, entity).Bind(3, st.version).Bind(4, target_version);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    auto events = ParseCommitEvents(q.Text(2), q.Int(0));
    if (!events.ok()) {
      q.Reset();
      return events.status();
    }
    int64_t version = q.Int(1);
    for (const Json& e : *events) {
      if (version > target_version) break;
      if (version > st.version) {
        auto type = e.find("type");
        auto data = e.find("data");
        auto time = e.find("time");
        if (type == e.end() || !type->is_string() || data == e.end() ||
            (time != e.end() && !time->is_number_integer())) {
          q.Reset();
          return Status::Internal("the commit stored at position " + std::to_string(q.Int(0)) +
                                  " has an unreadable event");
        }
        (void)s.rules->Apply(&st, type->get_ref<const std::string&>(), *data, Rules::Mode::kReplay);
        st.version = version;
        st.updated_at = StoredEventTime(e, q.Int(3));
      }
      ++version;
    }
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

  const int64_t current = CurrentVersion(db, s->id, entity);
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
    // Times never decrease within an entity: the newest commit that began at or before `at`
    // holds the version.
    auto& q = db.Cached(
        "SELECT position, first_version, events, first_time FROM commits WHERE stream_id = ? AND "
        "entity = ? AND first_time <= ? ORDER BY last_version DESC LIMIT 1");
    q.Bind(1, s->id).Bind(2, entity).Bind(3, *query.at);
    target = 0;
    if (q.Step() == SQLITE_ROW) {
      auto events = ParseCommitEvents(q.Text(2), q.Int(0));
      const int64_t first = q.Int(1);
      const TimeMicros first_time = q.Int(3);
      q.Reset();
      if (!events.ok()) return events.status();
      for (size_t i = 0; i < events->size(); ++i) {
        if (StoredEventTime((*events)[i], first_time) > *query.at) break;
        target = first + static_cast<int64_t>(i);
      }
    } else {
      q.Reset();
    }
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
  out.version = CurrentVersion(db, s->id, entity);
  if (out.version == 0) {
    ErrorContext ctx;
    ctx.stream = stream;
    ctx.entity = entity;
    return Status::NotFound("entity " + entity + " has no events", ctx);
  }
  // Whole commits, never split: the page ends with the commit that reaches the limit.
  auto& page = db.Cached(
      "SELECT position, first_version, source, events, first_time FROM commits WHERE "
      "stream_id = ? AND entity = ? AND last_version >= ? ORDER BY last_version");
  const int64_t from = std::max<int64_t>(from_version, 1);
  page.Bind(1, s->id).Bind(2, entity).Bind(3, from);
  while (static_cast<int>(out.events.size()) < limit) {
    const int rc = page.Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) {
      page.Reset();
      return sqlite::Error(db, "reading entity " + entity);
    }
    StoredCommit commit{stream, entity, page.Int(0), page.Int(1), page.String(2), page.Int(4)};
    if (auto d = DecodeCommitEvents(page.Text(3), commit, from, nullptr, &out.events); !d.ok()) {
      page.Reset();
      return d;
    }
  }
  page.Reset();
  int64_t last = out.events.empty() ? from - 1 : out.events.back().version;
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
  // With a type filter, a commit whose text names none of the types is skipped unparsed (the
  // encoder writes each type as "type":"<name>"; a match is then checked on the parsed event).
  std::vector<std::string> needles;
  needles.reserve(types.size());
  for (const auto& t : types) needles.push_back("\"type\":" + Json(t).dump());
  auto& page = db.Cached(
      "SELECT position, entity, first_version, source, events, first_time FROM commits WHERE "
      "stream_id = ? AND position > ? AND position <= ? ORDER BY position");
  page.Bind(1, s->id).Bind(2, after).Bind(3, watermark);
  int rc;
  while ((rc = page.Step()) == SQLITE_ROW) {
    const std::string_view text = page.Text(4);
    bool wanted = needles.empty();
    for (const auto& n : needles) wanted = wanted || text.find(n) != std::string_view::npos;
    if (!wanted) continue;
    StoredCommit commit{stream,      page.String(1), page.Int(0),
                        page.Int(2), page.String(3), page.Int(5)};
    if (auto d = DecodeCommitEvents(text, commit, 0, &types, &out.events); !d.ok()) {
      page.Reset();
      return d;
    }
    if (static_cast<int>(out.events.size()) >= limit) {
      page.Reset();
      out.next = commit.position;
      return out;
    }
  }
  page.Reset();
  if (rc != SQLITE_DONE) return sqlite::Error(db, "reading stream " + stream);
  return out;  // scanned up to the watermark
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
      "SELECT e.entity, (SELECT max(c.last_version) FROM commits c WHERE c.stream_id = "
      "e.stream_id AND c.entity = e.entity), e.deleted FROM entities e WHERE e.stream_id = ? "
      "AND e.entity > ? AND e.entity >= ? AND e.entity < ? ORDER BY e.entity LIMIT ?");
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
