// Internals shared by event_log.cc (open, writer) and event_log_read.cc (reads).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "sidelog/event_log.h"
#include "sqlite.h"

namespace sidelog {

// `commits` is keyed by its stream's id and its position in one integer (schema 6), so it is a
// rowid table: a group commit's rows go at the end of their stream's range, where SQLite adds
// leaves without rebalancing the ones before them.
constexpr int kPositionBits = 40;
constexpr int64_t kMaxPosition = (int64_t{1} << kPositionBits) - 1;
constexpr int64_t kMaxStreamId = (int64_t{1} << (63 - kPositionBits)) - 1;
inline int64_t CommitKey(int64_t stream_id, int64_t position) {
  return (stream_id << kPositionBits) + position;
}

struct StreamRuntime {
  int64_t id = 0;
  std::string name;
  std::shared_ptr<const Rules> rules;
  std::atomic<int64_t> last_position{0};
  std::atomic<int64_t> watermark{0};
  // Counters: written by the writer thread, read by anyone.
  std::atomic<int64_t> entities{0};
  std::atomic<int64_t> commits{0};
  std::atomic<int64_t> events{0};
  std::atomic<int> health{0};  // StreamHealth
  // The watermark this batch will publish: readers see `watermark` move only after COMMIT, or
  // they could read past commits their snapshot does not hold yet. Writer thread only.
  int64_t pending_watermark = 0;

  // The entity index's tail (schema 5; docs/architecture.md, "Entity index"): recent commits by
  // entity, in version order. The writer adds each commit it stores inside its transaction
  // (and takes it out again if that rolls back). Once more than index_tail_commits of them are
  // not in entity_commits yet, each group commit writes some there, whole entities at a time,
  // oldest first; the tail drops them one merging group commit later. Changed by the writer
  // under tail_mu; readers copy what they need under tail_mu.
  struct TailCommit {
    int64_t position, first_version, last_version;
  };
  struct TailEntity {
    std::vector<TailCommit> commits;
    size_t merged = 0;    // leading commits already written to entity_commits (writer only)
    bool queued = false;  // in merge_order (writer only)
  };
  // The entity's tail commits above `min_version`, or nullopt when a merge that `generation`
  // (a snapshot's index_generation) does not hold already dropped some.
  std::optional<std::vector<TailCommit>> TailCopy(const std::string& entity, int64_t min_version,
                                                  int64_t generation) const;
  mutable std::mutex tail_mu;
  std::unordered_map<std::string, TailEntity> tail;
  int64_t tail_dropped_generation = 0;  // commits merged up to this generation left the tail

  // Writer only.
  std::atomic<size_t> tail_unmerged{0};  // tail commits not in entity_commits (Stats reads it)
  // Entities with unmerged commits, in the order their oldest unmerged commit was stored,
  // each with a position no unmerged commit stored since is below (the watermark then plus
  // one, or that commit's position if lower: a commit stored later is above the watermark at
  // its time). The front's is therefore below every unmerged commit: the stream's
  // unindexed_from.
  struct Queued {
    std::string entity;
    int64_t bound;
  };
  std::deque<Queued> merge_order;
  int64_t index_generation = 0;  // as committed
  // Merged by the last committed merge, dropped from the tail by the next one.
  std::vector<std::pair<std::string, size_t>> merged_last;
};

// An entity's commits as one transaction on `db` sees them: those of entity_commits, then the
// newer ones of the stream's in-memory tail.
class EntityCommits {
 public:
  struct Row {
    int64_t position, first_version, last_version;
    std::string_view source, events;  // valid during the visit only
    TimeMicros first_time;
  };
  // Visits rows until the visitor returns false or an error.
  using Visit = std::function<Result<bool>(const Row&)>;

  // The stream's index_generation and watermark as a transaction sees them.
  struct Marks {
    int64_t generation, watermark;
  };
  static Result<Marks> ReadMarks(sqlite::Db& db, const StreamRuntime& s);
  // nullopt when the snapshot is older than the tail (two merges committed since it began):
  // the caller starts a new transaction. `marks` when the caller read them already.
  static Result<std::optional<EntityCommits>> Open(sqlite::Db& db, const StreamRuntime& s,
                                                   const std::string& entity,
                                                   std::optional<Marks> marks = {});

  sqlite::Db& db() const { return *db_; }
  const std::string& entity() const { return entity_; }
  // The newest commit's last version and position; {0, 0} when the entity has none.
  Result<std::pair<int64_t, int64_t>> Head() const;
  // Commits whose last version is at least `from`, oldest first.
  Status Forward(int64_t from, const Visit& visit) const;
  // All commits, newest first.
  Status Backward(const Visit& visit) const;

 private:
  EntityCommits(sqlite::Db& db, const StreamRuntime& s, std::string entity, int64_t watermark,
                std::pair<int64_t, int64_t> indexed_head,
                std::vector<StreamRuntime::TailCommit> tail)
      : db_(&db),
        stream_(&s),
        entity_(std::move(entity)),
        watermark_(watermark),
        indexed_head_(indexed_head),
        tail_(std::move(tail)) {}
  // Whether this snapshot holds the tail commit.
  Result<bool> Holds(const StreamRuntime::TailCommit& t) const;
  // Visits the rows of a bound query over entity_commits joined with commits (position,
  // first_version, last_version, source, events, first_time). *more: false once the visitor
  // stopped.
  Status VisitIndexed(sqlite::Stmt& q, const Visit& visit, bool* more) const;
  // The tail commit's row; false (and no visit) when this snapshot does not hold it.
  Result<bool> VisitTail(const StreamRuntime::TailCommit& t, const Visit& visit, bool* more) const;

  sqlite::Db* db_;
  const StreamRuntime* stream_;
  std::string entity_;
  int64_t watermark_;
  std::pair<int64_t, int64_t> indexed_head_;     // newest (last_version, position) in the index
  std::vector<StreamRuntime::TailCommit> tail_;  // only versions above the index's
};

// The writer's in-memory view of recently written entities: their current folded state.
// Writer thread only.
class EntityCache {
 public:
  explicit EntityCache(size_t capacity) : capacity_(capacity) {}
  EntityState* Find(const std::string& key);
  EntityState* Put(const std::string& key, EntityState state);
  void Erase(const std::string& key);
  void Clear();

 private:
  using Entry = std::pair<std::string, EntityState>;
  size_t capacity_;
  std::list<Entry> lru_;  // front = most recent
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

class EventLog::Impl {
 public:
  explicit Impl(EventLogOptions options)
      : options_(std::move(options)), cache_(options_.entity_cache_size) {}

  // --- open (event_log.cc)
  Status OpenDatabase(const std::vector<StreamSpec>& streams);
  void StartWriter();
  void Close();

  // --- append (event_log.cc)
  // Checks what needs no entity state. A schema rejection is returned in *deferred, not as the
  // result: ids are checked before rules, so a retry of a stored commit still replays.
  Status Prepare(AppendRequest& request, Status* deferred) const;
  void Enqueue(AppendRequest request, Status deferred, AppendCallback done);
  // Empty when the append must go through the writer's queue instead.
  std::optional<Result<AppendResult>> TryAppendInline(AppendRequest& request,
                                                      const Status& deferred);

  // --- reads (event_log_read.cc)
  const StreamRuntime* Find(const std::string& stream) const;
  Result<EntityState> Fold(const EntityCommits& commits, const StreamRuntime& s,
                           int64_t target_version) const;
  Result<EntityEvents> ReadEntity(const std::string& stream, const std::string& entity,
                                  int64_t from_version, int limit) const;
  Result<StreamPage> ReadStream(const std::string& stream, int64_t after, int limit,
                                const std::set<std::string>& types) const;
  Result<EntityList> ListEntities(const std::string& stream, const std::string& prefix,
                                  const std::string& after, int limit) const;
  Result<EntityState> State(const std::string& stream, const std::string& entity,
                            const StateQuery& query) const;

  // A read connection from the pool, returned on destruction.
  class Reader {
   public:
    Reader(const Impl* impl, std::unique_ptr<sqlite::Db> db) : impl_(impl), db_(std::move(db)) {}
    ~Reader();
    Reader(Reader&&) = default;
    sqlite::Db& db() { return *db_; }
    // A read transaction, so multi-statement reads see one snapshot.
    Status Begin() { return db_->Exec("BEGIN"); }
    void End() { (void)db_->Exec("COMMIT"); }

   private:
    const Impl* impl_;
    std::unique_ptr<sqlite::Db> db_;
  };
  Result<Reader> AcquireReader() const;
  // Begins a read transaction on `reader` and opens the entity's commits in it (again, in a
  // new transaction, when a merge outran the first). The caller ends the transaction.
  Result<EntityCommits> OpenEntity(Reader& reader, const StreamRuntime& s,
                                   const std::string& entity) const;

  EventLogOptions options_;
  std::map<std::string, std::unique_ptr<StreamRuntime>> streams_;

  // Writer thread state.
  struct Pending {
    AppendRequest request;
    Status deferred;  // a rule rejection to answer unless the append is a replay
    AppendCallback done;
    // Other writer work (plans, replicated commits): runs instead of an append, inside the
    // batch transaction under its own savepoint; answered after the commit like appends.
    std::function<Result<AppendResult>()> op;
  };
  void EnqueueOp(std::function<Result<AppendResult>()> op, AppendCallback done);
  using Snapshots = std::vector<std::pair<int64_t, EntityState>>;
  // With `take_data`, the events' data moves from `r` into `out` (the request is spent).
  Status FoldNew(StreamRuntime& s, AppendRequest& r, EntityState* state,
                 std::vector<StoredEvent>* out, Snapshots* snapshots, bool take_data);
  Result<AppendResult> WriteCommit(StreamRuntime& s, int64_t position, const std::string& commit_id,
                                   const std::vector<StoredEvent>& events, EntityState* state,
                                   const Snapshots& snapshots);
  Status StoreIds(StreamRuntime& s, const std::string& entity, int64_t position,
                  const std::vector<StoredEvent>& events);
  Result<bool> StoreIdRun(StreamRuntime& s, const std::string& entity, int64_t position,
                          const std::vector<StoredEvent>& events);
  std::optional<std::pair<int64_t, int64_t>> FindInRun(StreamRuntime& s, const std::string& entity,
                                                       const std::string& id);
  Status Unwritable(const StreamRuntime& s, StreamHealth h) const;
  Result<AppendResult> StoreOne(StreamRuntime& s, int64_t position, const std::string& commit_id,
                                std::vector<StoredEvent>& events, bool from_follower);
  Result<PlannedCommit> PlanOne(StreamRuntime& s, AppendRequest& request, const Status& deferred);
  void WriterLoop();
  void CheckpointLoop();
  // One group commit in progress on the writer thread.
  struct Batch {
    struct Head {
      int64_t last_position, watermark;
    };
    Status begin;  // the transaction's BEGIN
    std::vector<Pending> pending;
    std::vector<Result<AppendResult>> results;
    std::vector<std::string> touched;  // cache keys changed in this transaction
    std::map<StreamRuntime*, Head> before;
  };
  // The entity index's tail (StreamRuntime::tail), writer side.
  void AddToTail(StreamRuntime& s, const std::string& entity, StreamRuntime::TailCommit c);
  void UndoTail(size_t mark);  // takes out what this batch added after `mark`
  // Writes the oldest entities' tail commits to entity_commits while more than
  // index_tail_commits are unmerged. *merged: whether it wrote any.
  Status MergeTail(StreamRuntime& s, bool* merged);
  void MergeCommitted(StreamRuntime& s);  // after COMMIT
  void MergeRolledBack();                 // after ROLLBACK
  int64_t UnindexedFrom(const StreamRuntime& s) const;
  Status LoadTail(sqlite::Db& db, StreamRuntime& s, int64_t unindexed_from);
  void BeginBatch(Batch& b);
  void ApplyPending(Batch& b, Pending p);
  void FinishBatch(Batch& b);
  Result<AppendResult> ApplyOne(StreamRuntime& s, AppendRequest& request, const Status& deferred,
                                std::vector<std::string>* touched);
  Result<EntityState*> LoadForWrite(StreamRuntime& s, const std::string& entity);
  Result<std::optional<AppendResult>> CheckIdempotency(StreamRuntime& s, const AppendRequest& r,
                                                       int64_t current_version);

  // The writer's state below (its connection, the entity cache, the streams' pending heads) is
  // used by whoever holds batch_mu_: the writer thread for a group commit, or a caller of the
  // synchronous Append for its own append (TryAppendInline).
  std::mutex batch_mu_;
  std::atomic<size_t> last_batch_{0};  // appends in the writer's last group commit
  // Tail entries added by the batch in progress, in order, so a rollback can take them out.
  std::vector<std::pair<StreamRuntime*, std::string>> batch_tail_;
  // Tail commits the batch in progress merged: stream, entity, how many.
  struct Merged {
    StreamRuntime* stream;
    std::string entity;
    size_t count;
  };
  std::vector<Merged> batch_merged_;
  std::unique_ptr<sqlite::Db> writer_db_;
  EntityCache cache_;
  std::thread writer_;
  std::thread checkpointer_;
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_stop_ = false;
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Pending> queue_;
  bool closing_ = false;
  bool closed_ = false;

  mutable std::mutex pool_mu_;
  mutable std::vector<std::unique_ptr<sqlite::Db>> pool_;

  mutable std::mutex origin_mu_;
  std::string log_id_;  // meta 'log_id': made when the file is created, never changed

  std::mutex subs_mu_;
  std::map<int, std::function<void(const std::string&, int64_t)>> subs_;
  int next_sub_ = 1;
};

// A commit row's events column (stored_commit.cc; the format is described in schema.cc).
struct StoredCommit {
  std::string stream;
  std::string entity;
  int64_t position = 0;
  int64_t first_version = 0;
  std::string source;         // the events' source unless one says otherwise
  TimeMicros first_time = 0;  // the events' time unless one says otherwise
};
// `events` all belong to one commit; those whose source is `source` or whose time is
// `first_time` do not repeat it. With `ids_are_run` (IsUuidRun), only the first event keeps its
// id: the others' are derived from it when read.
std::string EncodeCommitEvents(const std::vector<StoredEvent>& events, const std::string& source,
                               TimeMicros first_time, bool ids_are_run);
// An element's time: its own, or the commit's first_time when it does not repeat it.
TimeMicros StoredEventTime(const Json& event, TimeMicros first_time);
// The JSON array, or Internal when the row is damaged.
Result<Json> ParseCommitEvents(std::string_view text, int64_t position);
// Appends the commit's events from `min_version` on, of `types` when given and not empty.
Status DecodeCommitEvents(std::string_view text, const StoredCommit& commit, int64_t min_version,
                          const std::set<std::string>* types, std::vector<StoredEvent>* out);

}  // namespace sidelog
