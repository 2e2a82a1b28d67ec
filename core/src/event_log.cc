// EventLog: open, group-commit writer and append.
#include <pthread.h>
#include <sys/stat.h>

#include <future>
#include <set>

#include "event_log_impl.h"
#include "schema.h"
#include "sidelog/names.h"

namespace sidelog {

const char* LogModeName(LogMode mode) {
  return mode == LogMode::kStandalone ? "standalone" : "replicated";
}

// ---------------------------------------------------------------------------------------------
// ExpectedVersion

Result<ExpectedVersion> ExpectedVersion::FromJson(const Json& j) {
  auto bad = [] {
    return Status::Invalid(
        "expectedVersion must be \"any\", \"none\", \"exists\" or a non-negative integer");
  };
  if (j.is_null()) return Any();
  if (j.is_number_integer()) {
    if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return bad();
    }
    int64_t v = j.get<int64_t>();
    if (v < 0) return bad();
    return Exactly(v);
  }
  if (!j.is_string()) return bad();
  const auto s = j.get<std::string>();
  if (s == "any") return Any();
  if (s == "none") return None();
  if (s == "exists") return Exists();
  if (s.empty() || s.size() > 18) return bad();
  for (char c : s) {
    if (c < '0' || c > '9') return bad();
  }
  return Exactly(std::stoll(s));
}

std::string ExpectedVersion::ToString() const {
  switch (kind) {
    case Kind::kAny: return "any";
    case Kind::kNone: return "none";
    case Kind::kExists: return "exists";
    case Kind::kExact: return std::to_string(version);
  }
  return "any";
}

// ---------------------------------------------------------------------------------------------
// EntityCache

EntityState* EntityCache::Find(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return &it->second->second;
}

EntityState* EntityCache::Put(const std::string& key, EntityState state) {
  if (auto* existing = Find(key)) {
    *existing = std::move(state);
    return existing;
  }
  lru_.emplace_front(key, std::move(state));
  index_[key] = lru_.begin();
  while (lru_.size() > capacity_ && lru_.size() > 1) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return &lru_.front().second;
}

void EntityCache::Erase(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return;
  lru_.erase(it->second);
  index_.erase(it);
}

void EntityCache::Clear() {
  lru_.clear();
  index_.clear();
}

namespace {

std::string CacheKey(int64_t stream_id, const std::string& entity) {
  return std::to_string(stream_id) + '\0' + entity;
}

std::string MetadataJson(const Metadata& m) { return m.empty() ? std::string() : Json(m).dump(); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Open and close

Result<std::unique_ptr<EventLog>> EventLog::Open(const EventLogOptions& options,
                                                 const std::vector<StreamSpec>& streams) {
  if (options.path.empty()) return Status::Invalid("the event log needs a file path");
  auto impl = std::make_unique<Impl>(options);
  if (auto s = impl->OpenDatabase(streams); !s.ok()) return s;
  impl->StartWriter();
  return std::unique_ptr<EventLog>(new EventLog(std::move(impl)));
}

EventLog::EventLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EventLog::~EventLog() { Close(); }
void EventLog::Close() { impl_->Close(); }

Status EventLog::Impl::OpenDatabase(const std::vector<StreamSpec>& streams) {
  auto db = sqlite::Db::Open(options_.path, false);
  if (!db.ok()) return db.status();
  writer_db_ = std::move(db).value();
  auto& w = *writer_db_;
  std::string sync = options_.durability == Durability::kFsync ? "FULL" : "NORMAL";
  auto s = w.Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=" + sync +
                  "; PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY; "
                  "PRAGMA cache_size=-16000; PRAGMA wal_autocheckpoint=4000;");
  if (!s.ok()) return Status::Internal("configuring " + options_.path + ": " + s.message());
  if (s = schema::Migrate(w); !s.ok()) return s;

  // The mode is fixed when the log is created.
  const std::string mode = LogModeName(options_.mode);
  {
    auto& get = w.Cached("SELECT value FROM meta WHERE key = 'mode'");
    if (get.Step() == SQLITE_ROW) {
      std::string stored = get.String(0);
      get.Reset();
      if (stored != mode) {
        return Status::Invalid("the event log " + options_.path + " was created in " + stored +
                               " mode and cannot be opened in " + mode +
                               " mode; move it over with `sidelog migrate` or use another "
                               "dataDir");
      }
    } else {
      get.Reset();
      auto& put = w.Cached("INSERT INTO meta (key, value) VALUES ('mode', ?)");
      if (s = put.Bind(1, mode).Exec(); !s.ok()) return s;
    }
  }

  for (const auto& spec : streams) {
    if (auto v = ValidateStreamName(spec.name); !v.ok()) return v;
    if (streams_.count(spec.name)) {
      return Status::Invalid("stream " + spec.name + " is listed twice");
    }
    auto rt = std::make_unique<StreamRuntime>();
    rt->name = spec.name;
    rt->rules = spec.rules ? spec.rules : Rules::Default();
    auto& ins = w.Cached("INSERT OR IGNORE INTO streams (name) VALUES (?)");
    if (s = ins.Bind(1, spec.name).Exec(); !s.ok()) return s;
    auto& sel = w.Cached(
        "SELECT id, last_position, watermark, entities, commits, events FROM streams "
        "WHERE name = ?");
    sel.Bind(1, spec.name);
    if (sel.Step() != SQLITE_ROW) return sqlite::Error(w, "reading stream " + spec.name);
    rt->id = sel.Int(0);
    rt->last_position = sel.Int(1);
    rt->watermark = sel.Int(2);
    rt->entities = sel.Int(3);
    rt->commits = sel.Int(4);
    rt->events = sel.Int(5);
    sel.Reset();
    // Snapshots made under other rules are useless now.
    auto& drop = w.Cached("DELETE FROM snapshots WHERE stream_id = ? AND rules_hash <> ?");
    if (s = drop.Bind(1, rt->id).Bind(2, rt->rules->hash()).Exec(); !s.ok()) return s;
    streams_[spec.name] = std::move(rt);
  }
  return Status::Ok();
}

void EventLog::Impl::StartWriter() {
  writer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "sidelog-writer");
    WriterLoop();
  });
}

void EventLog::Impl::Close() {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (closed_) return;
    closing_ = true;
  }
  queue_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  std::lock_guard<std::mutex> lock(queue_mu_);
  closed_ = true;
  {
    std::lock_guard<std::mutex> pool(pool_mu_);
    pool_.clear();
  }
  if (writer_db_) {
    (void)writer_db_->Exec("PRAGMA wal_checkpoint(TRUNCATE)");
    writer_db_.reset();
  }
}

// ---------------------------------------------------------------------------------------------
// Append

Status EventLog::Impl::Prepare(AppendRequest& r, Status* deferred) const {
  ErrorContext ctx;
  ctx.stream = r.stream;
  ctx.entity = r.entity;
  ctx.expected_version = r.expected.ToString();
  const StreamRuntime* s = Find(r.stream);
  if (s == nullptr) {
    if (auto v = ValidateStreamName(r.stream); !v.ok()) return v;
    return Status::NotFound("stream " + r.stream + " is not served here", ctx);
  }
  if (auto v = ValidateEntityId(r.entity); !v.ok()) {
    return Status(v.code(), v.message(), [&] {
      auto c = ctx;
      c.rule = v.context().rule;
      return c;
    }());
  }
  if (r.events.empty()) {
    ctx.rule = "events.nonEmpty";
    return Status::Invalid("a commit needs at least one event", ctx);
  }
  if (r.events.size() > options_.max_events_per_commit) {
    ctx.rule = "events.maxPerCommit";
    return Status::TooLarge("a commit holds at most " +
                                std::to_string(options_.max_events_per_commit) +
                                " events, this one has " + std::to_string(r.events.size()),
                            ctx);
  }
  std::set<std::string> ids;
  for (size_t i = 0; i < r.events.size(); ++i) {
    auto& e = r.events[i];
    std::string where = "events[" + std::to_string(i) + "]";
    if (auto v = ValidateEventInput(e, where); !v.ok()) {
      auto c = ctx;
      c.rule = v.context().rule;
      return Status(v.code(), v.message(), c);
    }
    if (!e.id.empty() && !ids.insert(e.id).second) {
      ctx.rule = "eventId.uniqueInCommit";
      return Status::Invalid(where + ": event id " + e.id + " appears twice in this commit", ctx);
    }
    if (deferred->ok()) {
      if (auto v = s->rules->ValidateSchema(e.type, e.data); !v.ok()) {
        auto c = ctx;
        c.rule = v.context().rule;
        *deferred = Status::Rejected(where + ": " + v.message(), c);
      }
    }
  }
  for (auto& e : r.events) {
    if (e.id.empty()) {
      e.id = NewUuidV7();
      e.id_generated = true;
    }
  }
  return Status::Ok();
}

void EventLog::AppendAsync(AppendRequest request, AppendCallback done) {
  Status deferred;
  if (auto s = impl_->Prepare(request, &deferred); !s.ok()) {
    done(s);
    return;
  }
  // Without client ids an append cannot be a replay: a rule rejection is final at once.
  bool any_client_id = false;
  for (const auto& e : request.events) any_client_id = any_client_id || !e.id_generated;
  if (!deferred.ok() && !any_client_id) {
    done(deferred);
    return;
  }
  impl_->Enqueue(std::move(request), std::move(deferred), std::move(done));
}

Result<AppendResult> EventLog::Append(AppendRequest request) {
  std::promise<Result<AppendResult>> promise;
  auto future = promise.get_future();
  AppendAsync(std::move(request),
              [&promise](Result<AppendResult> r) { promise.set_value(std::move(r)); });
  return future.get();
}

void EventLog::Impl::Enqueue(AppendRequest request, Status deferred, AppendCallback done) {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (!closing_) {
      queue_.push_back({std::move(request), std::move(deferred), std::move(done)});
      queue_cv_.notify_one();
      return;
    }
  }
  ErrorContext ctx;
  ctx.retry_after_seconds = 1;
  done(Status::Unavailable("the event log is shutting down", ctx));
}

void EventLog::Impl::WriterLoop() {
  std::vector<Pending> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(queue_mu_);
      queue_cv_.wait(lock, [&] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closing and drained
      while (!queue_.empty() && batch.size() < options_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    CommitBatch(batch);
    batch.clear();
  }
}

// One group commit: every append of the batch in one transaction, then one fsync, then the
// answers. A failing append rolls back to its savepoint and does not affect the others.
void EventLog::Impl::CommitBatch(std::vector<Pending>& batch) {
  auto& db = *writer_db_;
  std::vector<Result<AppendResult>> results;
  results.reserve(batch.size());
  std::vector<std::string> touched;  // cache keys changed in this transaction
  std::map<StreamRuntime*, int64_t> moved;  // streams whose position advanced -> old position

  Status begin = db.Exec("BEGIN IMMEDIATE");
  for (auto& p : batch) {
    if (!begin.ok()) {
      results.emplace_back(Status::Internal("cannot start a transaction: " + begin.message()));
      continue;
    }
    StreamRuntime& s = *streams_.at(p.request.stream);
    int64_t before = s.last_position.load();
    (void)db.Cached("SAVEPOINT append").Exec();
    auto r = ApplyOne(s, p.request, p.deferred, &touched);
    if (r.ok()) {
      (void)db.Cached("RELEASE append").Exec();
      if (!r->replay) moved.emplace(&s, before);
    } else {
      (void)db.Cached("ROLLBACK TO append").Exec();
      (void)db.Cached("RELEASE append").Exec();
      s.last_position = before;
      for (const auto& key : touched) cache_.Erase(key);  // conservative: reload on next use
      touched.clear();
    }
    results.push_back(std::move(r));
  }

  Status commit = begin;
  if (begin.ok()) {
    // Persist the stream heads once per batch.
    for (auto& [s, before] : moved) {
      if (s->last_position.load() == before) continue;
      auto& up = db.Cached(
          "UPDATE streams SET last_position = ?, watermark = max(watermark, ?), entities = ?, "
          "commits = ?, events = ? WHERE id = ?");
      up.Bind(1, s->last_position.load())
          .Bind(2, s->last_position.load())
          .Bind(3, s->entities.load())
          .Bind(4, s->commits.load())
          .Bind(5, s->events.load())
          .Bind(6, s->id);
      if (commit = up.Exec(); !commit.ok()) break;
    }
    if (commit.ok()) commit = db.Exec("COMMIT");
    if (!commit.ok()) (void)db.Exec("ROLLBACK");
  }

  if (!commit.ok()) {
    // Nothing of this batch is durable: reload what the writer believed.
    cache_.Clear();
    auto& sel = db.Cached(
        "SELECT last_position, watermark, entities, commits, events FROM streams WHERE id = ?");
    for (auto& [s, before] : moved) {
      sel.Bind(1, s->id);
      if (sel.Step() == SQLITE_ROW) {
        s->last_position = sel.Int(0);
        s->entities = sel.Int(2);
        s->commits = sel.Int(3);
        s->events = sel.Int(4);
      }
      sel.Reset();
    }
    for (auto& r : results) {
      if (r.ok()) {
        ErrorContext ctx;
        ctx.stream = r->stream;
        ctx.entity = r->entity;
        ctx.retry_after_seconds = 1;
        r = Status::Unavailable("the local event log could not commit: " + commit.message(), ctx);
      }
    }
    moved.clear();
  } else {
    // Standalone: the watermark follows the last position.
    for (auto& [s, before] : moved) s->watermark = s->last_position.load();
  }

  // Subscribers first, so a caller that saw its append acknowledged finds it announced.
  if (!moved.empty()) {
    std::lock_guard<std::mutex> lock(subs_mu_);
    for (auto& [s, before] : moved) {
      for (auto& [id, fn] : subs_) fn(s->name, s->watermark.load());
    }
  }
  for (size_t i = 0; i < batch.size(); ++i) batch[i].done(std::move(results[i]));
}

Result<EntityState*> EventLog::Impl::LoadForWrite(StreamRuntime& s, const std::string& entity) {
  std::string key = CacheKey(s.id, entity);
  if (EntityState* hit = cache_.Find(key)) return hit;
  auto& head = writer_db_->Cached("SELECT version FROM entities WHERE stream_id = ? AND entity = ?");
  head.Bind(1, s.id).Bind(2, entity);
  int64_t version = 0;
  if (head.Step() == SQLITE_ROW) version = head.Int(0);
  head.Reset();
  if (version == 0) return cache_.Put(key, s.rules->Initial());
  auto folded = Fold(*writer_db_, s, entity, version);
  if (!folded.ok()) return folded.status();
  return cache_.Put(key, std::move(folded).value());
}

// Ids are checked before versions (DESIGN.md "Expected version and idempotency"): returns the
// original result when the ids are exactly those of one stored commit with equal content, an
// empty optional when none is stored, and Conflict otherwise.
Result<std::optional<AppendResult>> EventLog::Impl::CheckIdempotency(StreamRuntime& s,
                                                                     const AppendRequest& r,
                                                                     int64_t current_version) {
  auto& db = *writer_db_;
  auto& q = db.Cached(
      "SELECT version, position, idx, type, data, metadata, time FROM events "
      "WHERE stream_id = ? AND id = ? AND entity = ?");
  ErrorContext ctx;
  ctx.stream = r.stream;
  ctx.entity = r.entity;
  ctx.expected_version = r.expected.ToString();
  ctx.current_version = current_version;
  ctx.rule = "idempotency";

  AppendResult original;
  size_t found = 0;
  std::string first_missing, mismatch;
  std::set<int64_t> positions;
  bool order_ok = true;
  for (size_t i = 0; i < r.events.size(); ++i) {
    const auto& e = r.events[i];
    if (e.id_generated) {  // a fresh UUIDv7 cannot be stored yet
      if (first_missing.empty()) first_missing = e.id;
      continue;
    }
    q.Bind(1, s.id).Bind(2, e.id).Bind(3, r.entity);
    if (q.Step() != SQLITE_ROW) {
      if (first_missing.empty()) first_missing = e.id;
      q.Reset();
      continue;
    }
    ++found;
    int64_t version = q.Int(0), position = q.Int(1), idx = q.Int(2);
    positions.insert(position);
    if (idx != static_cast<int64_t>(i)) order_ok = false;
    Metadata meta;
    if (!q.IsNull(5)) meta = Json::parse(q.Text(5)).get<Metadata>();
    std::string stored = CanonicalContent(q.String(3), Json::parse(q.Text(4)), meta);
    if (mismatch.empty() && stored != CanonicalContent(e.type, e.data, e.metadata)) {
      mismatch = e.id;
    }
    if (found == 1) {
      original.from_version = version;
      original.position = position;
      original.time = q.Int(6);
    }
    original.version = std::max(original.version, version);
    original.from_version = std::min(original.from_version, version);
    original.events.push_back({e.id, version});
    q.Reset();
  }
  if (found == 0) return std::optional<AppendResult>();
  if (!mismatch.empty()) {
    return Status::Conflict("event id " + mismatch +
                                " is already stored for this entity with other content (type, "
                                "data or metadata); use a new id for a new event",
                            ctx);
  }
  if (found < r.events.size()) {
    return Status::Conflict("some event ids of this commit are already stored and others (" +
                                first_missing +
                                ") are not; a retry must resend exactly the original commit",
                            ctx);
  }
  if (positions.size() > 1) {
    return Status::Conflict("these event ids were stored by " + std::to_string(positions.size()) +
                                " different commits; a retry must resend exactly one commit",
                            ctx);
  }
  auto& c = db.Cached(
      "SELECT first_version, last_version, commit_id FROM commits WHERE stream_id = ? AND "
      "position = ?");
  c.Bind(1, s.id).Bind(2, original.position);
  if (c.Step() != SQLITE_ROW) {
    c.Reset();
    return sqlite::Error(db, "reading commit at position " + std::to_string(original.position));
  }
  int64_t count = c.Int(1) - c.Int(0) + 1;
  original.commit_id = c.String(2);
  c.Reset();
  if (!order_ok || count != static_cast<int64_t>(r.events.size())) {
    return Status::Conflict("these event ids were stored in a commit of " + std::to_string(count) +
                                " events in another order or with other events; a retry must "
                                "resend exactly the original commit",
                            ctx);
  }
  original.stream = r.stream;
  original.entity = r.entity;
  original.replay = true;
  return std::optional<AppendResult>(std::move(original));
}

Result<AppendResult> EventLog::Impl::ApplyOne(StreamRuntime& s, AppendRequest& r,
                                              const Status& deferred,
                                              std::vector<std::string>* touched) {
  auto& db = *writer_db_;
  auto loaded = LoadForWrite(s, r.entity);
  if (!loaded.ok()) return loaded.status();
  EntityState* entity = *loaded;
  const int64_t current = entity->version;

  auto replay = CheckIdempotency(s, r, current);
  if (!replay.ok()) return replay.status();
  if (replay->has_value()) return std::move(**replay);
  if (!deferred.ok()) return deferred;

  ErrorContext ctx;
  ctx.stream = r.stream;
  ctx.entity = r.entity;
  ctx.expected_version = r.expected.ToString();
  ctx.current_version = current;
  if (entity->deleted) {
    return Status::Gone("entity " + r.entity + " was deleted at version " +
                            std::to_string(current) + "; it takes no more events",
                        ctx);
  }
  bool version_ok = true;
  switch (r.expected.kind) {
    case ExpectedVersion::Kind::kAny: break;
    case ExpectedVersion::Kind::kNone: version_ok = current == 0; break;
    case ExpectedVersion::Kind::kExists: version_ok = current > 0; break;
    case ExpectedVersion::Kind::kExact: version_ok = current == r.expected.version; break;
  }
  if (!version_ok) {
    ctx.rule = "expectedVersion";
    std::string want = r.expected.kind == ExpectedVersion::Kind::kNone     ? "no entity"
                       : r.expected.kind == ExpectedVersion::Kind::kExists ? "an existing entity"
                                                                           : "version " + ctx.expected_version;
    return Status::Conflict("expected " + want + ", but entity " + r.entity + " is at version " +
                                std::to_string(current),
                            ctx);
  }

  // Fold the new events strictly, in place in the cached state: a refusal drops the cache entry
  // (the savepoint rolls back the rows), so it changes nothing.
  const std::string key = CacheKey(s.id, r.entity);
  touched->push_back(key);
  EntityState& next = *entity;
  const TimeMicros time = std::max(NowMicros(), entity->updated_at);
  const int64_t position = s.last_position.load() + 1;
  AppendResult result;
  result.stream = r.stream;
  result.entity = r.entity;
  result.from_version = current + 1;
  result.position = position;
  result.time = time;

  auto& ins = db.Cached(
      "INSERT INTO events (stream_id, entity, version, position, idx, id, type, time, status, "
      "source, data, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  auto& snap = db.Cached(
      "INSERT OR REPLACE INTO snapshots (stream_id, entity, version, rules_hash, status, deleted, "
      "time, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  std::vector<std::string> ids;
  ids.reserve(r.events.size());
  for (size_t i = 0; i < r.events.size(); ++i) {
    const auto& e = r.events[i];
    if (next.deleted) {
      ctx.rule = "reducers.delete";
      return Status::Rejected("events[" + std::to_string(i) +
                                  "]: the entity is deleted by an earlier event of this commit",
                              ctx);
    }
    auto applied = s.rules->Apply(&next, e.type, e.data, Rules::Mode::kAppend);
    if (!applied.ok()) {
      ErrorContext c = ctx;
      c.rule = applied.context().rule;
      return Status::Rejected("events[" + std::to_string(i) + "] (" + e.type +
                                  "): " + applied.message(),
                              c);
    }
    next.version = current + 1 + static_cast<int64_t>(i);
    next.updated_at = time;
    ins.Bind(1, s.id)
        .Bind(2, r.entity)
        .Bind(3, next.version)
        .Bind(4, position)
        .Bind(5, static_cast<int64_t>(i))
        .Bind(6, e.id)
        .Bind(7, e.type)
        .Bind(8, time)
        .Bind(9, next.status)
        .Bind(10, options_.source)
        .Bind(11, e.data.dump());
    if (e.metadata.empty()) {
      ins.BindNull(12);
    } else {
      ins.Bind(12, MetadataJson(e.metadata));
    }
    if (auto st = ins.Exec(); !st.ok()) return st;
    ins.Reset();
    if (options_.snapshot_every > 0 && next.version % options_.snapshot_every == 0) {
      snap.Bind(1, s.id)
          .Bind(2, r.entity)
          .Bind(3, next.version)
          .Bind(4, s.rules->hash())
          .Bind(5, next.status)
          .Bind(6, next.deleted ? 1 : 0)
          .Bind(7, time)
          .Bind(8, next.state.dump());
      if (auto st = snap.Exec(); !st.ok()) return st;
      snap.Reset();
    }
    ids.push_back(e.id);
    result.events.push_back({e.id, next.version});
  }
  result.version = next.version;
  result.commit_id = CommitId(r.stream, r.entity, ids);

  auto& commit = db.Cached(
      "INSERT INTO commits (stream_id, position, entity, commit_id, first_version, last_version) "
      "VALUES (?, ?, ?, ?, ?, ?)");
  commit.Bind(1, s.id)
      .Bind(2, position)
      .Bind(3, r.entity)
      .Bind(4, result.commit_id)
      .Bind(5, result.from_version)
      .Bind(6, result.version);
  if (auto st = commit.Exec(); !st.ok()) return st;
  auto& head = db.Cached(
      "INSERT INTO entities (stream_id, entity, version, time, status, deleted) VALUES "
      "(?, ?, ?, ?, ?, ?) ON CONFLICT (stream_id, entity) DO UPDATE SET version = "
      "excluded.version, time = excluded.time, status = excluded.status, deleted = "
      "excluded.deleted");
  head.Bind(1, s.id)
      .Bind(2, r.entity)
      .Bind(3, next.version)
      .Bind(4, time)
      .Bind(5, next.status)
      .Bind(6, next.deleted ? 1 : 0);
  if (auto st = head.Exec(); !st.ok()) return st;

  if (current == 0) s.entities.fetch_add(1);
  s.commits.fetch_add(1);
  s.events.fetch_add(static_cast<int64_t>(r.events.size()));
  s.last_position = position;
  return result;
}

// ---------------------------------------------------------------------------------------------
// Subscriptions and small accessors

int EventLog::Subscribe(std::function<void(const std::string&, int64_t)> fn) {
  std::lock_guard<std::mutex> lock(impl_->subs_mu_);
  int id = impl_->next_sub_++;
  impl_->subs_[id] = std::move(fn);
  return id;
}

void EventLog::Unsubscribe(int id) {
  std::lock_guard<std::mutex> lock(impl_->subs_mu_);
  impl_->subs_.erase(id);
}

int64_t EventLog::Watermark(const std::string& stream) const {
  const StreamRuntime* s = impl_->Find(stream);
  return s ? s->watermark.load() : -1;
}

std::vector<std::string> EventLog::StreamNames() const {
  std::vector<std::string> names;
  for (const auto& [name, s] : impl_->streams_) names.push_back(name);
  return names;
}

bool EventLog::HasStream(const std::string& stream) const { return impl_->Find(stream); }

Result<StreamStats> EventLog::Stats(const std::string& stream) const {
  const StreamRuntime* s = impl_->Find(stream);
  if (s == nullptr) return Status::NotFound("stream " + stream + " is not served here");
  StreamStats st;
  st.name = s->name;
  st.entities = s->entities.load();
  st.commits = s->commits.load();
  st.events = s->events.load();
  st.last_position = s->last_position.load();
  st.watermark = s->watermark.load();
  return st;
}

int64_t EventLog::SizeBytes() const {
  int64_t total = 0;
  for (const char* suffix : {"", "-wal"}) {
    struct stat st {};
    if (stat((impl_->options_.path + suffix).c_str(), &st) == 0) total += st.st_size;
  }
  return total;
}

const EventLogOptions& EventLog::options() const { return impl_->options_; }

}  // namespace sidelog
