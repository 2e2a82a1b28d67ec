// EventLog: open, group-commit writer and append.
#include <pthread.h>
#include <sys/stat.h>

#include <algorithm>
#include <future>
#include <set>

#include "event_log_impl.h"
#include "schema.h"
#include "sidelog/names.h"
#include "wal_vfs.h"

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
    case Kind::kAny:
      return "any";
    case Kind::kNone:
      return "none";
    case Kind::kExists:
      return "exists";
    case Kind::kExact:
      return std::to_string(version);
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

constexpr int kIdsPerInsert = 16;

std::string CacheKey(int64_t stream_id, const std::string& entity) {
  return std::to_string(stream_id) + '\0' + entity;
}

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
  // The writer's WAL frames go out in one write per commit (wal_vfs.cc).
  auto db = sqlite::Db::Open(options_.path, false, sqlite::WalBatchingVfs());
  if (!db.ok()) return db.status();
  writer_db_ = std::move(db).value();
  auto& w = *writer_db_;
  std::string sync = options_.durability == Durability::kFsync ? "FULL" : "NORMAL";
  auto s = w.Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=" + sync +
                  "; PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY; "
                  "PRAGMA cache_size=-16000; PRAGMA wal_autocheckpoint=4000; "
                  "PRAGMA journal_size_limit=67108864;");
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
                               " mode; use another dataDir for this mode");
      }
    } else {
      get.Reset();
      auto& put = w.Cached("INSERT INTO meta (key, value) VALUES ('mode', ?)");
      if (s = put.Bind(1, mode).Exec(); !s.ok()) return s;
    }
  }

  // The log's identity, so a reader that kept a position can tell this file from another one.
  {
    auto& get = w.Cached("SELECT value FROM meta WHERE key = 'log_id'");
    if (get.Step() == SQLITE_ROW) {
      log_id_ = get.String(0);
      get.Reset();
    } else {
      get.Reset();
      log_id_ = NewUuidV7();
      auto& put = w.Cached("INSERT INTO meta (key, value) VALUES ('log_id', ?)");
      if (s = put.Bind(1, log_id_).Exec(); !s.ok()) return s;
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
        "SELECT id, last_position, watermark, entities, commits, events, unindexed_from, "
        "index_generation FROM streams WHERE name = ?");
    sel.Bind(1, spec.name);
    if (sel.Step() != SQLITE_ROW) return sqlite::Error(w, "reading stream " + spec.name);
    rt->id = sel.Int(0);
    if (rt->id > kMaxStreamId) {
      sel.Reset();
      return Status::Internal("stream " + spec.name + " has id " + std::to_string(rt->id) +
                              ", beyond the commits key's range");
    }
    rt->last_position = sel.Int(1);
    rt->watermark = sel.Int(2);
    rt->entities = sel.Int(3);
    rt->commits = sel.Int(4);
    rt->events = sel.Int(5);
    const int64_t unindexed_from = sel.Int(6);
    rt->index_generation = rt->tail_dropped_generation = sel.Int(7);
    sel.Reset();
    if (s = LoadTail(w, *rt, unindexed_from); !s.ok()) return s;
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
  checkpointer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "sidelog-ckpt");
    CheckpointLoop();
  });
}

// Copies the WAL into the database file in the background, so that no append waits for it.
// With SQLite's automatic checkpoint alone, the commit that crosses the threshold copies
// thousands of pages and fsyncs the database file on the writer thread: a stall of several
// milliseconds for every append queued behind it. PASSIVE never blocks the writer or readers.
// The writer keeps its automatic checkpoint, which then finds almost everything copied: it
// is what restarts the WAL from its start (a background checkpoint alone cannot, while
// commits keep arriving, and the WAL would grow without bound).
void EventLog::Impl::CheckpointLoop() {
  auto db = sqlite::Db::Open(options_.path, false);
  if (!db.ok()) return;  // SQLite's own checkpoint at close still runs
  const std::string sync = options_.durability == Durability::kFsync ? "FULL" : "NORMAL";
  // The checkpoint syncs the database file before the WAL may be reused: it needs the same
  // durability as the writer.
  if (!(*db)->Exec("PRAGMA synchronous=" + sync + "; PRAGMA wal_autocheckpoint=0;").ok()) return;
  std::unique_lock<std::mutex> lock(checkpoint_mu_);
  while (!checkpoint_stop_) {
    checkpoint_cv_.wait_for(lock, std::chrono::milliseconds(200),
                            [this] { return checkpoint_stop_; });
    if (checkpoint_stop_) break;
    lock.unlock();
    (void)(*db)->Exec("PRAGMA wal_checkpoint(PASSIVE)");
    lock.lock();
  }
}

void EventLog::Impl::Close() {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (closed_) return;
    closing_ = true;
  }
  queue_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    checkpoint_stop_ = true;
  }
  checkpoint_cv_.notify_all();
  if (checkpointer_.joinable()) checkpointer_.join();
  std::lock_guard<std::mutex> batch(batch_mu_);  // an inline append finishes first
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
  // The ids a commit needs are consecutive (event i gets base + i), so a commit whose ids are
  // all generated stores them as one run (WriteCommit).
  std::vector<std::string> run;
  for (size_t i = 0; i < r.events.size(); ++i) {
    auto& e = r.events[i];
    if (e.id.empty()) {
      if (run.empty()) run = UuidRun(NewUuidV7(), r.events.size());
      e.id = std::move(run[i]);
      e.id_generated = true;
    }
  }
  return Status::Ok();
}

namespace {

// Without client ids an append cannot be a replay: a rule rejection is final at once.
bool FinalAtOnce(const AppendRequest& request, const Status& deferred) {
  if (deferred.ok()) return false;
  for (const auto& e : request.events) {
    if (!e.id_generated) return false;
  }
  return true;
}

}  // namespace

void EventLog::AppendAsync(AppendRequest request, AppendCallback done) {
  Status deferred;
  if (auto s = impl_->Prepare(request, &deferred); !s.ok()) {
    done(s);
    return;
  }
  if (FinalAtOnce(request, deferred)) {
    done(deferred);
    return;
  }
  impl_->Enqueue(std::move(request), std::move(deferred), std::move(done));
}

Result<AppendResult> EventLog::Append(AppendRequest request) {
  Status deferred;
  if (auto s = impl_->Prepare(request, &deferred); !s.ok()) return s;
  if (FinalAtOnce(request, deferred)) return deferred;
  if (auto r = impl_->TryAppendInline(request, deferred)) return std::move(*r);
  std::promise<Result<AppendResult>> promise;
  auto future = promise.get_future();
  impl_->Enqueue(std::move(request), std::move(deferred),
                 [&promise](Result<AppendResult> r) { promise.set_value(std::move(r)); });
  return future.get();
}

// The synchronous Append runs its own append on the caller's thread when the writer is idle
// and its last group commit held one append: two thread hand-offs fewer per append (about a
// tenth of a 100-event commit here). Under concurrency appends queue for the writer, whose
// group commits they need; then the writer's batches are larger and this path stays unused.
std::optional<Result<AppendResult>> EventLog::Impl::TryAppendInline(AppendRequest& request,
                                                                    const Status& deferred) {
  if (options_.mode != LogMode::kStandalone || last_batch_.load() > 1) return std::nullopt;
  std::unique_lock<std::mutex> batch_lock(batch_mu_, std::try_to_lock);
  if (!batch_lock.owns_lock()) return std::nullopt;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (closing_ || !queue_.empty()) return std::nullopt;  // the writer has work: join it
  }
  std::optional<Result<AppendResult>> result;
  Batch batch;
  BeginBatch(batch);
  ApplyPending(batch, {std::move(request), deferred,
                       [&result](Result<AppendResult> r) { result = std::move(r); }, nullptr});
  FinishBatch(batch);
  return result;
}

void EventLog::Impl::Enqueue(AppendRequest request, Status deferred, AppendCallback done) {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (!closing_) {
      queue_.push_back({std::move(request), std::move(deferred), std::move(done), nullptr});
      queue_cv_.notify_one();
      return;
    }
  }
  ErrorContext ctx;
  ctx.retry_after_seconds = 1;
  done(Status::Unavailable("the event log is shutting down", ctx));
}

// Group commit. The writer opens a transaction as soon as an append is queued and applies
// appends as they arrive, so its work overlaps the callers' preparing the next ones. It
// commits when the queue is empty or the batch is as large as the previous one (callers that
// were answered together come back together): one fsync serves them all.
void EventLog::Impl::WriterLoop() {
  std::vector<Pending> taken;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(queue_mu_);
      queue_cv_.wait(lock, [&] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closing and drained
    }
    std::lock_guard<std::mutex> batch_lock(batch_mu_);
    Batch batch;
    BeginBatch(batch);
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(queue_mu_);
        while (!queue_.empty() && batch.pending.size() + taken.size() < options_.max_batch) {
          taken.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      if (taken.empty()) break;
      for (auto& p : taken) ApplyPending(batch, std::move(p));
      taken.clear();
      if (batch.pending.size() >= std::max<size_t>(last_batch_.load(), 1) ||
          batch.pending.size() >= options_.max_batch) {
        break;
      }
    }
    last_batch_ = batch.pending.size();
    FinishBatch(batch);
  }
}

// Every append of a batch runs in one transaction under its own savepoint: a failing append
// rolls back to it and does not affect the others.
void EventLog::Impl::BeginBatch(Batch& b) {
  for (auto& [name, s] : streams_) {
    s->pending_watermark = s->watermark.load();
    b.before[s.get()] = {s->last_position.load(), s->pending_watermark};
  }
  b.begin = writer_db_->Exec("BEGIN IMMEDIATE");
}

void EventLog::Impl::ApplyPending(Batch& b, Pending p) {
  auto& db = *writer_db_;
  if (!b.begin.ok()) {
    b.results.emplace_back(Status(
        b.begin.code(), "cannot start a transaction: " + b.begin.message(), b.begin.context()));
    b.pending.push_back(std::move(p));
    return;
  }
  (void)db.Cached("SAVEPOINT append").Exec();
  const size_t tail_mark = batch_tail_.size();
  std::map<StreamRuntime*, Batch::Head> heads;
  for (auto& [s, h] : b.before) heads[s] = {s->last_position.load(), s->pending_watermark};
  Result<AppendResult> r = Status::Ok();
  if (p.op) {
    r = p.op();
  } else {
    r = ApplyOne(*streams_.at(p.request.stream), p.request, p.deferred, &b.touched);
  }
  if (r.ok()) {
    (void)db.Cached("RELEASE append").Exec();
  } else {
    (void)db.Cached("ROLLBACK TO append").Exec();
    (void)db.Cached("RELEASE append").Exec();
    UndoTail(tail_mark);
    for (auto& [s, h] : heads) {
      s->last_position = h.last_position;
      s->pending_watermark = h.watermark;
    }
    for (const auto& key : b.touched) cache_.Erase(key);  // conservative: reload on next use
    b.touched.clear();
  }
  b.results.push_back(std::move(r));
  b.pending.push_back(std::move(p));
}

// Commits the batch (one fsync), then answers every caller.
void EventLog::Impl::FinishBatch(Batch& b) {
  auto& db = *writer_db_;
  // Standalone: the watermark follows the last position. Replicated: the follower moves it.
  Status commit = b.begin;
  std::vector<StreamRuntime*> moved;
  std::set<StreamRuntime*> merged_streams;
  for (auto& [s, h] : b.before) {
    if (options_.mode == LogMode::kStandalone) s->pending_watermark = s->last_position.load();
    bool merged = false;
    if (commit.ok()) commit = MergeTail(*s, &merged);
    // A replica may store a commit below its last position without moving the watermark: its
    // row must still be written, or unindexed_from could pass that commit.
    StreamRuntime* stream = s;
    const bool stored = std::any_of(batch_tail_.begin(), batch_tail_.end(),
                                    [stream](const auto& added) { return added.first == stream; });
    if (merged) merged_streams.insert(s);
    if (merged || stored || s->last_position.load() != h.last_position ||
        s->pending_watermark != h.watermark) {
      moved.push_back(s);
    }
  }
  if (b.begin.ok()) {
    // Persist the stream heads once per batch.
    for (auto* s : moved) {
      if (!commit.ok()) break;
      auto& up = db.Cached(
          "UPDATE streams SET last_position = ?, watermark = ?, entities = ?, commits = ?, "
          "events = ?, unindexed_from = ?, index_generation = ? WHERE id = ?");
      up.Bind(1, s->last_position.load())
          .Bind(2, s->pending_watermark)
          .Bind(3, s->entities.load())
          .Bind(4, s->commits.load())
          .Bind(5, s->events.load())
          .Bind(6, UnindexedFrom(*s))
          .Bind(7, s->index_generation + (merged_streams.count(s) ? 1 : 0))
          .Bind(8, s->id);
      commit = up.Exec();
    }
    if (commit.ok()) commit = db.Exec("COMMIT");
    if (!commit.ok()) (void)db.Exec("ROLLBACK");
  }
  if (commit.ok()) {
    for (auto* s : moved) s->watermark = s->pending_watermark;  // now readers may see it
    for (auto* s : moved) MergeCommitted(*s);
    batch_merged_.clear();
    batch_tail_.clear();
  }

  if (!commit.ok()) {
    // Nothing of this batch is durable: reload what the writer believed.
    MergeRolledBack();
    UndoTail(0);
    for (auto& before : b.before) {
      // Entities queued by this batch alone have nothing to merge now, and their bounds came
      // from a watermark that did not commit.
      StreamRuntime* s = before.first;
      std::erase_if(s->merge_order, [s](const StreamRuntime::Queued& q) {
        auto it = s->tail.find(q.entity);
        if (it == s->tail.end()) return true;
        const bool done = it->second.merged == it->second.commits.size();
        if (done) it->second.queued = false;
        return done;
      });
    }
    cache_.Clear();
    auto& sel = db.Cached(
        "SELECT last_position, watermark, entities, commits, events FROM streams WHERE id = ?");
    for (auto& [s, h] : b.before) {
      sel.Bind(1, s->id);
      if (sel.Step() == SQLITE_ROW) {
        s->last_position = sel.Int(0);
        s->watermark = sel.Int(1);
        s->entities = sel.Int(2);
        s->commits = sel.Int(3);
        s->events = sel.Int(4);
      }
      sel.Reset();
    }
    for (auto& r : b.results) {
      if (r.ok()) {
        ErrorContext ctx = commit.context();
        ctx.stream = r->stream;
        ctx.entity = r->entity;
        if (!ctx.retry_after_seconds) ctx.retry_after_seconds = 1;
        r = commit.code() == Status::Code::kStorageFull
                ? Status::StorageFull(commit.message(), ctx)
                : Status::Unavailable("the local event log could not commit: " + commit.message(),
                                      ctx);
      }
    }
    moved.clear();
  }

  // Subscribers first, so a caller that saw its append acknowledged finds it announced.
  if (!moved.empty()) {
    std::lock_guard<std::mutex> lock(subs_mu_);
    for (auto* s : moved) {
      for (auto& [id, fn] : subs_) fn(s->name, s->watermark.load());
    }
  }
  for (size_t i = 0; i < b.pending.size(); ++i) b.pending[i].done(std::move(b.results[i]));
}

Result<EntityState*> EventLog::Impl::LoadForWrite(StreamRuntime& s, const std::string& entity) {
  std::string key = CacheKey(s.id, entity);
  if (EntityState* hit = cache_.Find(key)) return hit;
  // The writer's own snapshot is the newest: the tail is never ahead of it.
  auto commits = EntityCommits::Open(*writer_db_, s, entity);
  if (!commits.ok()) return commits.status();
  if (!commits->has_value()) return Status::Internal("the entity index's tail is behind its table");
  auto head = (*commits)->Head();
  if (!head.ok()) return head.status();
  const auto [version, position] = *head;
  if (version == 0) return cache_.Put(key, s.rules->Initial());
  auto folded = Fold(**commits, s, version);
  if (!folded.ok()) return folded.status();
  folded->position = position;
  return cache_.Put(key, std::move(folded).value());
}

// ---------------------------------------------------------------------------------------------
// The entity index's tail (schema 5; docs/architecture.md, "Entity index")

void EventLog::Impl::AddToTail(StreamRuntime& s, const std::string& entity,
                               StreamRuntime::TailCommit c) {
  {
    std::lock_guard<std::mutex> lock(s.tail_mu);
    auto& e = s.tail[entity];
    e.commits.push_back(c);
    if (!e.queued) {
      e.queued = true;
      s.merge_order.push_back({entity, std::min(c.position, s.pending_watermark + 1)});
    }
  }
  ++s.tail_unmerged;
  batch_tail_.emplace_back(&s, entity);
}

void EventLog::Impl::UndoTail(size_t mark) {
  while (batch_tail_.size() > mark) {
    auto& [s, entity] = batch_tail_.back();
    {
      std::lock_guard<std::mutex> lock(s->tail_mu);
      auto it = s->tail.find(entity);
      if (it != s->tail.end()) {
        // An entity's commits of a batch are added in version order, and merged after all
        // of them: the last one is this batch's and unmerged.
        it->second.commits.pop_back();
        --s->tail_unmerged;
        // Still queued when empty: MergeTail passes over it.
      }
    }
    batch_tail_.pop_back();
  }
}

// While more than index_tail_commits tail commits are unmerged, writes the oldest entities'
// commits to entity_commits, at most kMergeRun of one entity at a time (then it waits its
// turn again). Each entity waited about index_tail_commits commits since its first unmerged
// one, so one page of entity_commits takes all it had meanwhile; and each group commit merges
// about as many commits as it added, so no commit pays for a big merge.
Status EventLog::Impl::MergeTail(StreamRuntime& s, bool* merged) {
  constexpr size_t kMergeRun = 256;
  const size_t keep = options_.index_tail_commits;
  auto& index = writer_db_->Cached(
      "INSERT INTO entity_commits (stream_id, entity, last_version, position) VALUES (?, ?, ?, ?)");
  while (s.tail_unmerged > keep && !s.merge_order.empty()) {
    StreamRuntime::Queued q = std::move(s.merge_order.front());
    s.merge_order.pop_front();
    auto it = s.tail.find(q.entity);
    if (it == s.tail.end()) continue;
    auto& e = it->second;
    if (e.commits.empty()) {  // its only commits rolled back
      std::lock_guard<std::mutex> lock(s.tail_mu);
      s.tail.erase(it);
      continue;
    }
    const size_t n = std::min(e.commits.size() - e.merged, kMergeRun);
    for (size_t i = e.merged; i < e.merged + n; ++i) {
      const auto& c = e.commits[i];
      index.Bind(1, s.id).Bind(2, q.entity).Bind(3, c.last_version).Bind(4, c.position);
      if (auto st = index.Exec(); !st.ok()) {
        s.merge_order.push_front(std::move(q));
        return Status::Internal("writing the entity index of stream " + s.name + ": " +
                                st.message());
      }
      index.Reset();
    }
    e.merged += n;  // only the writer reads it: no lock needed
    s.tail_unmerged -= n;
    if (n > 0) batch_merged_.push_back({&s, q.entity, n});
    *merged = *merged || n > 0;
    if (e.merged < e.commits.size()) {
      s.merge_order.push_front(std::move(q));  // still the oldest: its bound still holds
    } else {
      e.queued = false;
    }
  }
  return Status::Ok();
}

// After a COMMIT: the previous merge's commits leave the tail, this one's wait for the next.
// A reader whose snapshot is older than that previous merge finds tail_dropped_generation
// above its own and starts again with a newer snapshot.
void EventLog::Impl::MergeCommitted(StreamRuntime& s) {
  std::vector<std::pair<std::string, size_t>> now;
  for (const auto& m : batch_merged_) {
    if (m.stream == &s) now.emplace_back(m.entity, m.count);
  }
  if (now.empty()) return;
  std::lock_guard<std::mutex> lock(s.tail_mu);
  for (const auto& [entity, count] : s.merged_last) {
    auto it = s.tail.find(entity);
    if (it == s.tail.end()) continue;
    auto& e = it->second;
    e.commits.erase(e.commits.begin(), e.commits.begin() + static_cast<std::ptrdiff_t>(count));
    e.merged -= count;
    if (e.commits.empty() && !e.queued) s.tail.erase(it);
  }
  s.tail_dropped_generation = s.index_generation;
  ++s.index_generation;
  s.merged_last = std::move(now);
}

// After a ROLLBACK: what this batch merged is unmerged again.
void EventLog::Impl::MergeRolledBack() {
  for (auto m = batch_merged_.rbegin(); m != batch_merged_.rend(); ++m) {
    StreamRuntime& s = *m->stream;
    auto it = s.tail.find(m->entity);
    if (it == s.tail.end()) continue;
    auto& e = it->second;
    e.merged -= m->count;
    s.tail_unmerged += m->count;
    if (!e.queued) {
      // First again: below its commits, and below everyone's as the front's bound was.
      int64_t bound = e.commits[e.merged].position;
      if (!s.merge_order.empty()) bound = std::min(bound, s.merge_order.front().bound);
      e.queued = true;
      s.merge_order.push_front({m->entity, bound});
    }
  }
  batch_merged_.clear();
}

// Every commit below it is in entity_commits: the lowest unmerged position.
int64_t EventLog::Impl::UnindexedFrom(const StreamRuntime& s) const {
  if (!s.merge_order.empty()) return s.merge_order.front().bound;
  return s.last_position.load() + 1;
}

// At open: the commits from unindexed_from on that entity_commits lacks form the tail (in
// replicated mode some above it may have been merged already).
Status EventLog::Impl::LoadTail(sqlite::Db& db, StreamRuntime& s, int64_t unindexed_from) {
  auto& q = db.Cached(
      "SELECT c.position, c.entity, c.first_version, c.last_version FROM commits c WHERE "
      "c.key BETWEEN ? AND ? AND NOT EXISTS (SELECT 1 FROM entity_commits e "
      "WHERE e.stream_id = ? AND e.entity = c.entity AND "
      "e.last_version = c.last_version) ORDER BY c.key");
  q.Bind(1, CommitKey(s.id, unindexed_from)).Bind(2, CommitKey(s.id, kMaxPosition)).Bind(3, s.id);
  std::lock_guard<std::mutex> lock(s.tail_mu);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    std::string entity = q.String(1);
    auto& e = s.tail[entity];
    e.commits.push_back({q.Int(0), q.Int(2), q.Int(3)});
    if (!e.queued) {
      e.queued = true;
      s.merge_order.push_back({entity, unindexed_from});
    }
    ++s.tail_unmerged;
  }
  q.Reset();
  if (rc != SQLITE_DONE) return sqlite::Error(db, "loading the entity index of " + s.name);
  return Status::Ok();
}

// Where `id` is stored for `entity` when an id run holds it: (position, idx).
std::optional<std::pair<int64_t, int64_t>> EventLog::Impl::FindInRun(StreamRuntime& s,
                                                                     const std::string& entity,
                                                                     const std::string& id) {
  auto& q = writer_db_->Cached(
      "SELECT first_id, last_id, entity, position FROM event_id_runs WHERE stream_id = ? AND "
      "first_id <= ? ORDER BY first_id DESC LIMIT 1");
  q.Bind(1, s.id).Bind(2, id);
  std::optional<std::pair<int64_t, int64_t>> at;
  if (q.Step() == SQLITE_ROW && id <= q.String(1) && q.String(2) == entity) {
    if (auto k = UuidOffset(q.String(0), id)) at = {q.Int(3), static_cast<int64_t>(*k)};
  }
  q.Reset();
  return at;
}

// Ids are checked before versions (DESIGN.md "Expected version and idempotency"): returns the
// original result when the ids are exactly those of one stored commit with equal content, an
// empty optional when none is stored, and Conflict otherwise.
Result<std::optional<AppendResult>> EventLog::Impl::CheckIdempotency(StreamRuntime& s,
                                                                     const AppendRequest& r,
                                                                     int64_t current_version) {
  auto& db = *writer_db_;
  auto& q = db.Cached(
      "SELECT position, idx FROM event_ids WHERE stream_id = ? AND id = ? AND entity = ?");
  ErrorContext ctx;
  ctx.stream = r.stream;
  ctx.entity = r.entity;
  ctx.expected_version = r.expected.ToString();
  ctx.current_version = current_version;
  ctx.rule = "idempotency";

  struct Found {
    size_t request_index;
    int64_t position;
    int64_t idx;
  };
  std::vector<Found> found;
  std::string first_missing;
  std::set<int64_t> positions;
  bool order_ok = true;
  for (size_t i = 0; i < r.events.size(); ++i) {
    const auto& e = r.events[i];
    if (e.id_generated) {  // a fresh UUIDv7 cannot be stored yet
      if (first_missing.empty()) first_missing = e.id;
      continue;
    }
    q.Bind(1, s.id).Bind(2, e.id).Bind(3, r.entity);
    std::optional<std::pair<int64_t, int64_t>> at;  // position, idx
    if (q.Step() == SQLITE_ROW) at = {q.Int(0), q.Int(1)};
    q.Reset();
    if (!at && IsCanonicalUuid(e.id)) at = FindInRun(s, r.entity, e.id);
    if (at) {
      found.push_back({i, at->first, at->second});
      positions.insert(at->first);
      if (at->second != static_cast<int64_t>(i)) order_ok = false;
    } else if (first_missing.empty()) {
      first_missing = e.id;
    }
  }
  if (found.empty()) return std::optional<AppendResult>();

  // The stored commits of the ids found, to compare contents and describe the original.
  struct Commit {
    int64_t first_version = 0, last_version = 0;
    TimeMicros first_time = 0;
    std::string commit_id;
    Json events;
  };
  std::map<int64_t, Commit> commits;
  auto& c = db.Cached(
      "SELECT first_version, last_version, commit_id, events, first_time FROM commits WHERE "
      "key = ?");
  for (int64_t position : positions) {
    c.Bind(1, CommitKey(s.id, position));
    if (c.Step() != SQLITE_ROW) {
      c.Reset();
      return sqlite::Error(db, "reading the commit at position " + std::to_string(position));
    }
    Commit& commit = commits[position];
    commit.first_version = c.Int(0);
    commit.last_version = c.Int(1);
    commit.commit_id = c.String(2);
    commit.first_time = c.Int(4);
    auto events = ParseCommitEvents(c.Text(3), position);
    c.Reset();
    if (!events.ok()) return events.status();
    commit.events = std::move(events).value();
  }

  AppendResult original;
  std::string mismatch;
  for (const Found& f : found) {
    const Commit& commit = commits[f.position];
    if (f.idx < 0 || f.idx >= static_cast<int64_t>(commit.events.size())) {
      return Status::Internal("event id index " + std::to_string(f.idx) +
                              " is outside the commit at position " + std::to_string(f.position));
    }
    const Json& stored = commit.events[static_cast<size_t>(f.idx)];
    const auto& e = r.events[f.request_index];
    if (mismatch.empty()) {
      Metadata meta;
      if (auto m = stored.find("metadata"); m != stored.end()) meta = m->get<Metadata>();
      if (CanonicalContent(stored.value("type", ""), stored.value("data", Json()), meta) !=
          CanonicalContent(e.type, e.data, e.metadata)) {
        mismatch = e.id;
      }
    }
    const int64_t version = commit.first_version + f.idx;
    if (original.events.empty()) {
      original.from_version = version;
      original.position = f.position;
      original.time = StoredEventTime(stored, commit.first_time);
    }
    original.version = std::max(original.version, version);
    original.from_version = std::min(original.from_version, version);
    original.events.push_back({e.id, version});
  }
  if (!mismatch.empty()) {
    return Status::Conflict("event id " + mismatch +
                                " is already stored for this entity with other content (type, "
                                "data or metadata); use a new id for a new event",
                            ctx);
  }
  if (found.size() < r.events.size()) {
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
  const Commit& commit = commits[original.position];
  const int64_t count = commit.last_version - commit.first_version + 1;
  original.commit_id = commit.commit_id;
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

namespace {

Status WrongVersion(const AppendRequest& r, const EntityState& entity) {
  const int64_t current = entity.version;
  ErrorContext ctx;
  ctx.stream = r.stream;
  ctx.entity = r.entity;
  ctx.expected_version = r.expected.ToString();
  ctx.current_version = current;
  if (entity.deleted) {
    return Status::Gone("entity " + r.entity + " was deleted at version " +
                            std::to_string(current) + "; it takes no more events",
                        ctx);
  }
  bool version_ok = true;
  switch (r.expected.kind) {
    case ExpectedVersion::Kind::kAny:
      break;
    case ExpectedVersion::Kind::kNone:
      version_ok = current == 0;
      break;
    case ExpectedVersion::Kind::kExists:
      version_ok = current > 0;
      break;
    case ExpectedVersion::Kind::kExact:
      version_ok = current == r.expected.version;
      break;
  }
  if (version_ok) return Status::Ok();
  ctx.rule = "expectedVersion";
  std::string want = r.expected.kind == ExpectedVersion::Kind::kNone ? "no entity"
                     : r.expected.kind == ExpectedVersion::Kind::kExists
                         ? "an existing entity"
                         : "version " + ctx.expected_version;
  return Status::Conflict(
      "expected " + want + ", but entity " + r.entity + " is at version " + std::to_string(current),
      ctx);
}

}  // namespace

// Folds the request's events strictly into `state` and describes them as stored events.
// Snapshots due every K versions are collected into `snapshots`.
Status EventLog::Impl::FoldNew(StreamRuntime& s, AppendRequest& r, EntityState* state,
                               std::vector<StoredEvent>* out, Snapshots* snapshots,
                               bool take_data) {
  ErrorContext ctx;
  ctx.stream = r.stream;
  ctx.entity = r.entity;
  ctx.expected_version = r.expected.ToString();
  ctx.current_version = state->version;
  const TimeMicros time = std::max(NowMicros(), state->updated_at);
  out->reserve(out->size() + r.events.size());
  for (size_t i = 0; i < r.events.size(); ++i) {
    auto& e = r.events[i];
    if (state->deleted) {
      ctx.rule = "reducers.delete";
      return Status::Rejected("events[" + std::to_string(i) +
                                  "]: the entity is deleted by an earlier event of this commit",
                              ctx);
    }
    auto applied = s.rules->Apply(state, e.type, e.data, Rules::Mode::kAppend);
    if (!applied.ok()) {
      ErrorContext c = ctx;
      c.rule = applied.context().rule;
      return Status::Rejected(
          "events[" + std::to_string(i) + "] (" + e.type + "): " + applied.message(), c);
    }
    state->version += 1;
    state->updated_at = time;
    StoredEvent se;
    se.stream = r.stream;
    se.entity = r.entity;
    se.source = options_.source;
    if (take_data) {
      se.id = std::move(e.id);
      se.type = std::move(e.type);
      se.data = std::move(e.data);
      se.metadata = std::move(e.metadata);
    } else {
      se.id = e.id;
      se.type = e.type;
      se.data = e.data;
      se.metadata = e.metadata;
    }
    se.version = state->version;
    se.index = static_cast<int32_t>(i);
    se.time = time;
    se.state = state->status;
    out->push_back(std::move(se));
    if (options_.snapshot_every > 0 && state->version % options_.snapshot_every == 0) {
      snapshots->push_back({state->version, *state});
    }
  }
  return Status::Ok();
}

// One event_ids row per event id: where each id of an entity is stored.
Status EventLog::Impl::StoreIds(StreamRuntime& s, const std::string& entity, int64_t position,
                                const std::vector<StoredEvent>& events) {
  auto& db = *writer_db_;
  // Rows of kIdsPerInsert per statement (?1-?3 are the stream, entity and position they
  // share): one statement step per 16 ids instead of one per id.
  static const std::string kIdsInsert = [] {
    std::string sql = "INSERT INTO event_ids (stream_id, entity, position, id, idx) VALUES ";
    for (int i = 0; i < kIdsPerInsert; ++i) {
      if (i > 0) sql += ", ";
      sql += "(?1, ?2, ?3, ?" + std::to_string(4 + 2 * i) + ", ?" + std::to_string(5 + 2 * i) + ")";
    }
    return sql;
  }();
  size_t next = 0;
  for (; next + kIdsPerInsert <= events.size(); next += kIdsPerInsert) {
    auto& ids = db.Cached(kIdsInsert.c_str());
    ids.Bind(1, s.id).Bind(2, entity).Bind(3, position);
    for (int i = 0; i < kIdsPerInsert; ++i) {
      const StoredEvent& e = events[next + static_cast<size_t>(i)];
      ids.Bind(4 + 2 * i, e.id).Bind(5 + 2 * i, static_cast<int64_t>(e.index));
    }
    if (auto st = ids.Exec(); !st.ok()) return st;
  }
  auto& id = db.Cached(
      "INSERT INTO event_ids (stream_id, entity, position, id, idx) VALUES (?, ?, ?, ?, ?)");
  for (; next < events.size(); ++next) {
    const StoredEvent& e = events[next];
    id.Bind(1, s.id)
        .Bind(2, entity)
        .Bind(3, position)
        .Bind(4, e.id)
        .Bind(5, static_cast<int64_t>(e.index));
    if (auto st = id.Exec(); !st.ok()) return st;
    id.Reset();
  }
  return Status::Ok();
}

// The ids of a commit whose ids are a run (IsUuidRun: the ids the log generates for a commit
// are) as one event_id_runs row instead of one event_ids row per event. Runs never overlap
// each other, nor an id already stored for the entity: then nothing is stored here and the
// ids go in event_ids rows. Returns whether the run was stored.
Result<bool> EventLog::Impl::StoreIdRun(StreamRuntime& s, const std::string& entity,
                                        int64_t position, const std::vector<StoredEvent>& events) {
  const std::string& first = events.front().id;
  const std::string& last = events.back().id;
  auto& db = *writer_db_;
  // The run with the greatest first id <= last is the only one that can overlap [first, last].
  auto& before = db.Cached(
      "SELECT last_id FROM event_id_runs WHERE stream_id = ? AND first_id <= ? "
      "ORDER BY first_id DESC LIMIT 1");
  before.Bind(1, s.id).Bind(2, last);
  bool overlaps = before.Step() == SQLITE_ROW && before.String(0) >= first;
  before.Reset();
  if (!overlaps) {
    auto& single = db.Cached(
        "SELECT 1 FROM event_ids WHERE stream_id = ? AND id BETWEEN ? AND ? AND entity = ? "
        "LIMIT 1");
    single.Bind(1, s.id).Bind(2, first).Bind(3, last).Bind(4, entity);
    overlaps = single.Step() == SQLITE_ROW;
    single.Reset();
  }
  if (overlaps) return false;
  auto& insert = db.Cached(
      "INSERT INTO event_id_runs (stream_id, first_id, last_id, entity, position) "
      "VALUES (?, ?, ?, ?, ?)");
  insert.Bind(1, s.id).Bind(2, first).Bind(3, last).Bind(4, entity).Bind(5, position);
  if (auto st = insert.Exec(); !st.ok()) return st;
  return true;
}

// Writes one commit's rows (the commit with its events, their ids, due snapshots, the entity
// head) at `position` and moves the stream's counters. `state` is the entity after the commit.
Result<AppendResult> EventLog::Impl::WriteCommit(StreamRuntime& s, int64_t position,
                                                 const std::string& commit_id,
                                                 const std::vector<StoredEvent>& events,
                                                 EntityState* state, const Snapshots& snapshots) {
  auto& db = *writer_db_;
  AppendResult result;
  result.stream = s.name;
  result.entity = events.front().entity;
  result.from_version = events.front().version;
  result.version = events.back().version;
  result.position = position;
  result.time = events.back().time;
  result.commit_id = commit_id;
  std::vector<std::string_view> ids;
  ids.reserve(events.size());
  for (const auto& e : events) ids.push_back(e.id);
  const bool is_run = IsUuidRun(ids);
  auto& commit = db.Cached(
      "INSERT INTO commits (key, entity, commit_id, first_version, last_version, first_time, "
      "source, events) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  commit.Bind(1, CommitKey(s.id, position))
      .Bind(2, result.entity)
      .Bind(3, commit_id)
      .Bind(4, result.from_version)
      .Bind(5, result.version)
      .Bind(6, events.front().time)
      .Bind(7, events.front().source)
      .Bind(8, EncodeCommitEvents(events, events.front().source, events.front().time, is_run));
  if (auto st = commit.Exec(); !st.ok()) return st;
  AddToTail(s, result.entity, {position, result.from_version, result.version});
  auto run = is_run ? StoreIdRun(s, result.entity, position, events) : Result<bool>(false);
  if (!run.ok()) return run.status();
  if (!*run) {
    if (auto st = StoreIds(s, result.entity, position, events); !st.ok()) return st;
  }
  for (const auto& e : events) result.events.push_back({e.id, e.version});
  auto& snap = db.Cached(
      "INSERT OR REPLACE INTO snapshots (stream_id, entity, version, rules_hash, status, deleted, "
      "time, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  for (const auto& [version, st] : snapshots) {
    snap.Bind(1, s.id)
        .Bind(2, result.entity)
        .Bind(3, version)
        .Bind(4, s.rules->hash())
        .Bind(5, st.status)
        .Bind(6, st.deleted ? 1 : 0)
        .Bind(7, st.updated_at)
        .Bind(8, st.state.dump());
    if (auto e = snap.Exec(); !e.ok()) return e;
    snap.Reset();
  }
  // The entity's row: written when it is created and when it is deleted (schema 3).
  if (result.from_version == 1 || state->deleted) {
    auto& head = db.Cached(
        "INSERT INTO entities (stream_id, entity, deleted) VALUES (?, ?, ?) ON CONFLICT "
        "(stream_id, entity) DO UPDATE SET deleted = excluded.deleted");
    head.Bind(1, s.id).Bind(2, result.entity).Bind(3, state->deleted ? 1 : 0);
    if (auto st = head.Exec(); !st.ok()) return st;
  }

  state->position = position;
  if (result.from_version == 1) s.entities.fetch_add(1);
  s.commits.fetch_add(1);
  s.events.fetch_add(static_cast<int64_t>(events.size()));
  if (position > s.last_position.load()) s.last_position = position;
  return result;
}

Result<AppendResult> EventLog::Impl::ApplyOne(StreamRuntime& s, AppendRequest& r,
                                              const Status& deferred,
                                              std::vector<std::string>* touched) {
  if (auto h = static_cast<StreamHealth>(s.health.load()); h != StreamHealth::kOk) {
    return Unwritable(s, h);
  }
  auto loaded = LoadForWrite(s, r.entity);
  if (!loaded.ok()) return loaded.status();
  EntityState* entity = *loaded;
  auto replay = CheckIdempotency(s, r, entity->version);
  if (!replay.ok()) return replay.status();
  if (replay->has_value()) return std::move(**replay);
  if (!deferred.ok()) return deferred;
  if (auto v = WrongVersion(r, *entity); !v.ok()) return v;

  // Fold strictly, in place in the cached state: a refusal drops the cache entry (and the
  // savepoint rolls back the rows), so it changes nothing.
  touched->push_back(CacheKey(s.id, r.entity));
  std::vector<StoredEvent> events;
  Snapshots snapshots;
  if (auto f = FoldNew(s, r, entity, &events, &snapshots, /*take_data=*/true); !f.ok()) return f;
  std::vector<std::string> ids;
  ids.reserve(events.size());
  for (const auto& e : events) ids.push_back(e.id);
  return WriteCommit(s, s.last_position.load() + 1, CommitId(r.stream, r.entity, ids), events,
                     entity, snapshots);
}

Status EventLog::Impl::Unwritable(const StreamRuntime& s, StreamHealth h) const {
  ErrorContext ctx;
  ctx.stream = s.name;
  ctx.retry_after_seconds = 30;
  ctx.reason = h == StreamHealth::kReset ? "StreamReset" : "Diverged";
  return Status::Unavailable(
      h == StreamHealth::kReset
          ? "the JetStream stream of " + s.name +
                " was deleted or reset under this sidecar; it refuses writes rather than reuse "
                "positions (see docs/replication.md)"
          : "stream " + s.name +
                " diverged: JetStream holds another commit at a position this log already has; "
                "writes are refused until an operator rebuilds the local log",
      ctx);
}

Result<PlannedCommit> EventLog::Impl::PlanOne(StreamRuntime& s, AppendRequest& r,
                                              const Status& deferred) {
  if (auto h = static_cast<StreamHealth>(s.health.load()); h != StreamHealth::kOk) {
    return Unwritable(s, h);
  }
  auto loaded = LoadForWrite(s, r.entity);
  if (!loaded.ok()) return loaded.status();
  const EntityState& entity = **loaded;
  PlannedCommit plan;
  auto replay = CheckIdempotency(s, r, entity.version);
  if (!replay.ok()) return replay.status();
  if (replay->has_value()) {
    plan.result = std::move(**replay);
    return plan;
  }
  if (!deferred.ok()) return deferred;
  if (auto v = WrongVersion(r, entity); !v.ok()) return v;
  EntityState copy = entity;
  Snapshots unused;
  if (auto f = FoldNew(s, r, &copy, &plan.events, &unused, /*take_data=*/false); !f.ok()) {
    return f;
  }
  std::vector<std::string> ids;
  for (const auto& e : plan.events) ids.push_back(e.id);
  plan.result.stream = r.stream;
  plan.result.entity = r.entity;
  plan.result.from_version = plan.events.front().version;
  plan.result.version = plan.events.back().version;
  plan.result.time = plan.events.back().time;
  plan.result.commit_id = CommitId(r.stream, r.entity, ids);
  for (const auto& e : plan.events) plan.result.events.push_back({e.id, e.version});
  plan.expected_last_position = entity.position;
  return plan;
}

Result<AppendResult> EventLog::Impl::StoreOne(StreamRuntime& s, int64_t position,
                                              const std::string& commit_id,
                                              std::vector<StoredEvent>& events,
                                              bool from_follower) {
  auto& db = *writer_db_;
  if (events.empty()) return Status::Invalid("a commit needs at least one event");
  if (position < 1 || position > kMaxPosition) {
    return Status::Invalid("position " + std::to_string(position) + " is outside 1.." +
                           std::to_string(kMaxPosition));
  }
  const std::string& entity_id = events.front().entity;
  auto advance = [&] {
    if (from_follower && position > s.pending_watermark) s.pending_watermark = position;
  };
  auto diverged = [&](const std::string& why) {
    s.health = static_cast<int>(StreamHealth::kDiverged);
    ErrorContext ctx;
    ctx.stream = s.name;
    ctx.entity = entity_id;
    ctx.reason = "Diverged";
    return Status::Internal(
        "stream " + s.name + " diverged at position " + std::to_string(position) + ": " + why, ctx);
  };
  auto& at =
      db.Cached("SELECT commit_id, entity, first_version, last_version FROM commits WHERE key = ?");
  at.Bind(1, CommitKey(s.id, position));
  if (at.Step() == SQLITE_ROW) {
    std::string stored = at.String(0);
    AppendResult r;
    r.stream = s.name;
    r.entity = at.String(1);
    r.from_version = at.Int(2);
    r.version = at.Int(3);
    r.position = position;
    r.commit_id = stored;
    at.Reset();
    if (stored != commit_id) return diverged("another commit (" + stored + ") is stored there");
    for (const auto& e : events) r.events.push_back({e.id, e.version});
    advance();
    return r;
  }
  at.Reset();
  auto loaded = LoadForWrite(s, entity_id);
  if (!loaded.ok()) return loaded.status();
  EntityState* entity = *loaded;
  if (entity->version + 1 != events.front().version) {
    if (entity->version >= events.back().version) {
      return diverged("versions " + std::to_string(events.front().version) + ".." +
                      std::to_string(events.back().version) + " of " + entity_id +
                      " are held by another commit");
    }
    ErrorContext ctx;
    ctx.stream = s.name;
    ctx.entity = entity_id;
    ctx.current_version = entity->version;
    return Status::Unavailable("the commit at position " + std::to_string(position) +
                                   " starts at version " + std::to_string(events.front().version) +
                                   " but the local log has " + entity_id + " at version " +
                                   std::to_string(entity->version) + "; catch the entity up first",
                               ctx);
  }
  // Stored commits are folded, never re-validated.
  Snapshots snapshots;
  for (auto& e : events) {
    (void)s.rules->Apply(entity, e.type, e.data, Rules::Mode::kReplay);
    entity->version = e.version;
    entity->updated_at = e.time;
    e.state = entity->status;
    if (options_.snapshot_every > 0 && e.version % options_.snapshot_every == 0) {
      snapshots.push_back({e.version, *entity});
    }
  }
  auto r = WriteCommit(s, position, commit_id, events, entity, snapshots);
  if (r.ok()) {
    advance();
  } else {
    cache_.Erase(CacheKey(s.id, entity_id));  // the savepoint rolls back; reload next time
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Replicated mode

void EventLog::Impl::EnqueueOp(std::function<Result<AppendResult>()> op, AppendCallback done) {
  Pending p;
  p.op = std::move(op);
  p.done = std::move(done);
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (!closing_) {
      queue_.push_back(std::move(p));
      queue_cv_.notify_one();
      return;
    }
  }
  ErrorContext ctx;
  ctx.retry_after_seconds = 1;
  p.done(Status::Unavailable("the event log is shutting down", ctx));
}

void EventLog::PlanAsync(std::shared_ptr<AppendRequest> request, PlanCallback done) {
  Status deferred;
  if (auto s = impl_->Prepare(*request, &deferred); !s.ok()) {
    done(s);
    return;
  }
  auto shared = std::make_shared<Result<PlannedCommit>>(Status::Ok());
  impl_->EnqueueOp(
      [this, shared, request = std::move(request), deferred]() -> Result<AppendResult> {
        *shared = impl_->PlanOne(*impl_->streams_.at(request->stream), *request, deferred);
        // Planning writes nothing; report failure so the savepoint is rolled back regardless.
        return shared->ok() ? Result<AppendResult>(AppendResult{}) : shared->status();
      },
      [shared, done = std::move(done)](const Result<AppendResult>& r) {
        if (!r.ok() && shared->ok()) *shared = r.status();  // the batch failed as a whole
        done(std::move(*shared));
      });
}

Result<PlannedCommit> EventLog::Plan(AppendRequest request) {
  std::promise<Result<PlannedCommit>> promise;
  auto future = promise.get_future();
  PlanAsync(std::make_shared<AppendRequest>(std::move(request)),
            [&promise](Result<PlannedCommit> r) { promise.set_value(std::move(r)); });
  return future.get();
}

void EventLog::StoreCommitAsync(const std::string& stream, int64_t position,
                                const std::string& commit_id, std::vector<StoredEvent> events,
                                bool from_follower, AppendCallback done) {
  StreamRuntime* s = nullptr;
  if (auto it = impl_->streams_.find(stream); it != impl_->streams_.end()) s = it->second.get();
  if (s == nullptr) {
    done(Status::NotFound("stream " + stream + " is not served here"));
    return;
  }
  impl_->EnqueueOp(
      [this, s, position, commit_id, events = std::move(events), from_follower]() mutable {
        return impl_->StoreOne(*s, position, commit_id, events, from_follower);
      },
      std::move(done));
}

Result<AppendResult> EventLog::StoreCommit(const std::string& stream, int64_t position,
                                           const std::string& commit_id,
                                           std::vector<StoredEvent> events, bool from_follower) {
  std::promise<Result<AppendResult>> promise;
  auto future = promise.get_future();
  StoreCommitAsync(stream, position, commit_id, std::move(events), from_follower,
                   [&promise](Result<AppendResult> r) { promise.set_value(std::move(r)); });
  return future.get();
}

std::string EventLog::Origin(const std::string& stream) const {
  const StreamRuntime* s = impl_->Find(stream);
  if (s == nullptr) return "";
  std::lock_guard<std::mutex> lock(impl_->origin_mu_);
  auto reader = impl_->AcquireReader();
  if (!reader.ok()) return "";
  auto& q = reader->db().Cached("SELECT coalesce(origin, '') FROM streams WHERE id = ?");
  q.Bind(1, s->id);
  std::string out = q.Step() == SQLITE_ROW ? q.String(0) : "";
  q.Reset();
  return out;
}

std::string EventLog::Identity(const std::string& stream) const {
  const std::string origin = Origin(stream);
  if (!origin.empty()) return "jetstream:" + origin;
  return impl_->options_.mode == LogMode::kStandalone ? "log:" + impl_->log_id_ : "";
}

Status EventLog::SetOrigin(const std::string& stream, const std::string& origin) {
  StreamRuntime* s = nullptr;
  if (auto it = impl_->streams_.find(stream); it != impl_->streams_.end()) s = it->second.get();
  if (s == nullptr) return Status::NotFound("stream " + stream + " is not served here");
  std::promise<Result<AppendResult>> promise;
  auto future = promise.get_future();
  impl_->EnqueueOp(
      [this, s, origin]() -> Result<AppendResult> {
        auto& up = impl_->writer_db_->Cached("UPDATE streams SET origin = ? WHERE id = ?");
        if (auto st = up.Bind(1, origin).Bind(2, s->id).Exec(); !st.ok()) return st;
        return AppendResult{};
      },
      [&promise](Result<AppendResult> r) { promise.set_value(std::move(r)); });
  auto r = future.get();
  return r.ok() ? Status::Ok() : r.status();
}

void EventLog::SetHealth(const std::string& stream, StreamHealth health) {
  if (auto it = impl_->streams_.find(stream); it != impl_->streams_.end()) {
    it->second->health = static_cast<int>(health);
  }
}

StreamHealth EventLog::Health(const std::string& stream) const {
  const StreamRuntime* s = impl_->Find(stream);
  return s ? static_cast<StreamHealth>(s->health.load()) : StreamHealth::kOk;
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
  st.unindexed_commits = static_cast<int64_t>(s->tail_unmerged.load());
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
