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

}  // namespace

std::optional<std::vector<StreamRuntime::TailCommit>> StreamRuntime::TailCopy(
    const std::string& entity, int64_t min_version, int64_t generation) const {
  std::lock_guard<std::mutex> lock(tail_mu);
  if (tail_dropped_generation > generation) return std::nullopt;
  std::vector<TailCommit> out;
  auto it = tail.find(entity);
  if (it == tail.end()) return out;
  for (const auto& c : it->second.commits) {
    if (c.last_version > min_version) out.push_back(c);
  }
  return out;
}

Result<EntityCommits::Marks> EntityCommits::ReadMarks(sqlite::Db& db, const StreamRuntime& s) {
  auto& q = db.Cached("SELECT index_generation, watermark FROM streams WHERE id = ?");
  q.Bind(1, s.id);
  if (q.Step() != SQLITE_ROW) {
    q.Reset();
    return sqlite::Error(db, "reading stream " + s.name);
  }
  const Marks marks{q.Int(0), q.Int(1)};
  q.Reset();
  return marks;
}

Result<std::optional<EntityCommits>> EntityCommits::Open(sqlite::Db& db, const StreamRuntime& s,
                                                         const std::string& entity,
                                                         std::optional<Marks> marks) {
  if (!marks) {
    auto read = ReadMarks(db, s);
    if (!read.ok()) return read.status();
    marks = *read;
  }
  // The index holds a prefix of the entity's versions; the tail, what comes after it.
  auto& newest = db.Cached(
      "SELECT last_version, position FROM entity_commits WHERE stream_id = ? AND entity = ? "
      "ORDER BY last_version DESC LIMIT 1");
  newest.Bind(1, s.id).Bind(2, entity);
  std::pair<int64_t, int64_t> head{0, 0};
  const int rc = newest.Step();
  if (rc == SQLITE_ROW) head = {newest.Int(0), newest.Int(1)};
  newest.Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sqlite::Error(db, "reading entity " + entity);
  auto tail = s.TailCopy(entity, head.first, marks->generation);
  if (!tail) return std::optional<EntityCommits>();
  return std::optional<EntityCommits>(
      EntityCommits(db, s, entity, marks->watermark, head, std::move(*tail)));
}

Result<bool> EntityCommits::Holds(const StreamRuntime::TailCommit& t) const {
  // Every commit up to the watermark is in the snapshot that read it. Above it (a commit not
  // committed yet, or a replica's own commit stored before the follower reached it) the
  // row says; the key is all the lookup reads.
  if (t.position <= watermark_) return true;
  auto& q = db_->Cached("SELECT 1 FROM commits WHERE key = ?");
  q.Bind(1, CommitKey(stream_->id, t.position));
  const int rc = q.Step();
  q.Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sqlite::Error(*db_, "reading " + entity_);
  return rc == SQLITE_ROW;
}

Result<bool> EntityCommits::VisitTail(const StreamRuntime::TailCommit& t, const Visit& visit,
                                      bool* more) const {
  auto& q = db_->Cached(
      "SELECT first_version, last_version, source, events, first_time FROM commits WHERE "
      "key = ?");
  q.Bind(1, CommitKey(stream_->id, t.position));
  const int rc = q.Step();
  if (rc == SQLITE_DONE) {
    q.Reset();
    return false;  // not committed when this snapshot began
  }
  if (rc != SQLITE_ROW) {
    q.Reset();
    return sqlite::Error(*db_, "reading entity " + entity_);
  }
  Row row{t.position, q.Int(0), q.Int(1), q.Text(2), q.Text(3), q.Int(4)};
  auto go_on = visit(row);
  q.Reset();
  if (!go_on.ok()) return go_on.status();
  *more = *go_on;
  return true;
}

Status EntityCommits::VisitIndexed(sqlite::Stmt& q, const Visit& visit, bool* more) const {
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    auto go_on = visit({q.Int(0), q.Int(1), q.Int(2), q.Text(3), q.Text(4), q.Int(5)});
    if (!go_on.ok() || !*go_on) {
      q.Reset();
      *more = false;
      return go_on.status();
    }
  }
  q.Reset();
  if (rc != SQLITE_DONE) return sqlite::Error(*db_, "reading entity " + entity_);
  return Status::Ok();
}

Status EntityCommits::Forward(int64_t from, const Visit& visit) const {
  if (from <= indexed_head_.first) {
    auto& q = db_->Cached(
        "SELECT c.position, c.first_version, c.last_version, c.source, c.events, c.first_time "
        "FROM entity_commits e JOIN commits c ON c.key = ? + e.position "
        "WHERE e.stream_id = ? AND e.entity = ? AND e.last_version >= ? "
        "ORDER BY e.last_version");
    q.Bind(1, CommitKey(stream_->id, 0)).Bind(2, stream_->id).Bind(3, entity_).Bind(4, from);
    bool more = true;
    if (auto s = VisitIndexed(q, visit, &more); !s.ok() || !more) return s;
  }
  for (const auto& t : tail_) {
    if (t.last_version < from) continue;
    bool more = true;
    auto seen = VisitTail(t, visit, &more);
    if (!seen.ok()) return seen.status();
    if (!*seen || !more) break;  // a commit this snapshot lacks: so are the later ones
  }
  return Status::Ok();
}

Status EntityCommits::Backward(const Visit& visit) const {
  for (auto t = tail_.rbegin(); t != tail_.rend(); ++t) {
    bool more = true;
    auto seen = VisitTail(*t, visit, &more);
    if (!seen.ok()) return seen.status();
    if (*seen && !more) return Status::Ok();
  }
  if (indexed_head_.first == 0) return Status::Ok();
  auto& q = db_->Cached(
      "SELECT c.position, c.first_version, c.last_version, c.source, c.events, c.first_time "
      "FROM entity_commits e JOIN commits c ON c.key = ? + e.position "
      "WHERE e.stream_id = ? AND e.entity = ? ORDER BY e.last_version DESC");
  q.Bind(1, CommitKey(stream_->id, 0)).Bind(2, stream_->id).Bind(3, entity_);
  bool more = true;
  return VisitIndexed(q, visit, &more);
}

Result<std::pair<int64_t, int64_t>> EntityCommits::Head() const {
  for (auto t = tail_.rbegin(); t != tail_.rend(); ++t) {
    auto holds = Holds(*t);
    if (!holds.ok()) return holds.status();
    if (*holds) return std::pair{t->last_version, t->position};
  }
  return indexed_head_;
}

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

Result<EntityCommits> EventLog::Impl::OpenEntity(Reader& reader, const StreamRuntime& s,
                                                 const std::string& entity) const {
  for (;;) {
    if (auto b = reader.Begin(); !b.ok()) return b;
    auto view = EntityCommits::Open(reader.db(), s, entity);
    if (!view.ok() || view->has_value()) {
      if (!view.ok()) reader.End();
      if (!view.ok()) return view.status();
      return std::move(**view);
    }
    reader.End();  // a merge dropped tail entries this snapshot needs: take a newer one
  }
}

// Folds the entity up to `target_version` from the latest snapshot at or below it. Stored
// events are never re-validated (Mode::kReplay).
Result<EntityState> EventLog::Impl::Fold(const EntityCommits& commits, const StreamRuntime& s,
                                         int64_t target_version) const {
  auto& db = commits.db();
  const std::string& entity = commits.entity();
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
  auto folded = commits.Forward(st.version + 1, [&](const EntityCommits::Row& c) -> Result<bool> {
    if (c.first_version > target_version) return false;
    auto events = ParseCommitEvents(c.events, c.position);
    if (!events.ok()) return events.status();
    int64_t version = c.first_version;
    for (const Json& e : *events) {
      if (version > target_version) break;
      if (version > st.version) {
        auto type = e.find("type");
        auto data = e.find("data");
        auto time = e.find("time");
        if (type == e.end() || !type->is_string() || data == e.end() ||
            (time != e.end() && !time->is_number_integer())) {
          return Status::Internal("the commit stored at position " + std::to_string(c.position) +
                                  " has an unreadable event");
        }
        (void)s.rules->Apply(&st, type->get_ref<const std::string&>(), *data, Rules::Mode::kReplay);
        st.version = version;
        st.updated_at = StoredEventTime(e, c.first_time);
      }
      ++version;
    }
    return true;
  });
  if (!folded.ok()) return folded;
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
  auto commits = OpenEntity(*reader, *s, entity);
  if (!commits.ok()) return commits.status();
  struct EndTxn {
    Reader* r;
    ~EndTxn() { r->End(); }
  } end{&*reader};

  auto head = commits->Head();
  if (!head.ok()) return head.status();
  const int64_t current = head->first;
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
    target = 0;
    auto found = commits->Backward([&](const EntityCommits::Row& c) -> Result<bool> {
      if (c.first_time > *query.at) return true;
      auto events = ParseCommitEvents(c.events, c.position);
      if (!events.ok()) return events.status();
      for (size_t i = 0; i < events->size(); ++i) {
        if (StoredEventTime((*events)[i], c.first_time) > *query.at) break;
        target = c.first_version + static_cast<int64_t>(i);
      }
      return false;
    });
    if (!found.ok()) return found;
    if (target == 0) {
      return Status::NotFound("entity " + entity + " had no events at " + FormatTime(*query.at),
                              ctx);
    }
  }
  auto folded = Fold(*commits, *s, target);
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
  auto commits = OpenEntity(*reader, *s, entity);
  if (!commits.ok()) return commits.status();
  struct EndTxn {
    Reader* r;
    ~EndTxn() { r->End(); }
  } end{&*reader};

  EntityEvents out;
  auto head = commits->Head();
  if (!head.ok()) return head.status();
  out.version = head->first;
  if (out.version == 0) {
    ErrorContext ctx;
    ctx.stream = stream;
    ctx.entity = entity;
    return Status::NotFound("entity " + entity + " has no events", ctx);
  }
  // Whole commits, never split: the page ends with the commit that reaches the limit.
  const int64_t from = std::max<int64_t>(from_version, 1);
  auto read = commits->Forward(from, [&](const EntityCommits::Row& c) -> Result<bool> {
    StoredCommit commit{stream,      entity, c.position, c.first_version, std::string(c.source),
                        c.first_time};
    if (auto d = DecodeCommitEvents(c.events, commit, from, nullptr, &out.events); !d.ok()) {
      return d;
    }
    return static_cast<int>(out.events.size()) < limit;
  });
  if (!read.ok()) return read;
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
      "key > ? AND key <= ? ORDER BY key");
  page.Bind(1, CommitKey(s->id, after)).Bind(2, CommitKey(s->id, watermark));
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
      "SELECT entity, deleted FROM entities WHERE stream_id = ? AND entity > ? AND entity >= ? "
      "AND entity < ? ORDER BY entity LIMIT ?");
  for (;;) {
    if (auto b = reader->Begin(); !b.ok()) return b;
    struct EndTxn {
      Reader* r;
      ~EndTxn() { r->End(); }
    } end{&*reader};
    auto marks = EntityCommits::ReadMarks(db, *s);
    if (!marks.ok()) return marks.status();
    q.Bind(1, s->id).Bind(2, after).Bind(3, prefix).Bind(4, prefix + '\x7f').Bind(5, limit);
    EntityList out;
    while (q.Step() == SQLITE_ROW) out.entities.push_back({q.String(0), 0, q.Int(1) != 0});
    q.Reset();
    bool stale = false;
    for (auto& e : out.entities) {
      auto commits = EntityCommits::Open(db, *s, e.id, *marks);
      if (!commits.ok()) return commits.status();
      if (!commits->has_value()) {
        stale = true;
        break;
      }
      auto head = (*commits)->Head();
      if (!head.ok()) return head.status();
      e.version = head->first;
    }
    if (stale) continue;  // a merge dropped tail entries this snapshot needs: take a newer one
    if (static_cast<int>(out.entities.size()) == limit) out.next = out.entities.back().id;
    return out;
  }
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
