// EventLog: the local event log of one sidecar, on SQLite (WAL).
//
// It stores commits (1..N events for one entity, atomically) per stream, checks expected
// versions, idempotent event ids and the stream's folding rules at append, and serves entity
// reads, stream reads, entity listings and folded state at any version or time.
//
// Threading: an EventLog is safe for concurrent use from any number of threads. Appends go to a
// single writer thread that commits every queued append in one transaction and one fsync (group
// commit); each caller is answered only after its commit is durable. Reads run in parallel on a
// pool of read-only connections and never wait for the writer.
//
// Ownership: Open returns the only owner. Destroying the log (or Close) finishes every queued
// append, answers its callback, and closes the database.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sidelog/event.h"
#include "sidelog/fold.h"
#include "sidelog/status.h"

namespace sidelog {

enum class Durability {
  kFsync,   // synchronous=FULL: a commit survives power loss (the standalone default)
  kNormal,  // synchronous=NORMAL: survives a process crash, not power loss (replicated default)
};

enum class LogMode { kStandalone, kReplicated };

const char* LogModeName(LogMode mode);

struct EventLogOptions {
  std::string path;  // the SQLite file; its directory must exist
  LogMode mode = LogMode::kStandalone;
  Durability durability = Durability::kFsync;
  int snapshot_every = 100;         // K: a snapshot every K versions; 0 disables snapshots
  size_t entity_cache_size = 4096;  // entities whose current state the writer keeps in memory
  size_t max_batch = 1024;          // appends per group commit at most
  size_t max_events_per_commit = 1000;
  // Recent commits whose entity index entries the writer keeps in memory before writing them
  // to disk, an entity's many at a time (docs/architecture.md, "Entity index"). Larger: fewer
  // pages written per commit, more memory (about 100 bytes a commit). 0: every group commit
  // writes the entries of its own commits.
  size_t index_tail_commits = 32768;
  std::string source = "/namespaces/default/services/local";  // CloudEvents source of appends
};

// A stream this log serves, with its folding rules.
struct StreamSpec {
  std::string name;
  std::shared_ptr<const Rules> rules;  // null: Rules::Default()
};

// `expectedVersion` of an append.
struct ExpectedVersion {
  enum class Kind { kAny, kNone, kExists, kExact };
  Kind kind = Kind::kAny;
  int64_t version = 0;  // kExact only

  static ExpectedVersion Any() { return {}; }
  static ExpectedVersion None() { return {Kind::kNone, 0}; }
  static ExpectedVersion Exists() { return {Kind::kExists, 0}; }
  static ExpectedVersion Exactly(int64_t v) {
    return v == 0 ? None() : ExpectedVersion{Kind::kExact, v};
  }
  // "any" | "none" | "exists" | N (a JSON integer or a decimal string, N >= 0).
  static Result<ExpectedVersion> FromJson(const Json& j);
  std::string ToString() const;
};

struct AppendRequest {
  std::string stream;
  std::string entity;
  ExpectedVersion expected;
  std::vector<EventInput> events;  // 1..max_events_per_commit; empty ids are generated
};

struct AppendResult {
  std::string stream;
  std::string entity;
  int64_t from_version = 0;  // the first new version
  int64_t version = 0;       // the last new version
  int64_t position = 0;      // the commit's stream position
  TimeMicros time = 0;
  std::string commit_id;
  struct EventRef {
    std::string id;
    int64_t version;
  };
  std::vector<EventRef> events;
  bool replay = false;  // true: these ids were already stored; this is the original result
};

// A commit checked against the entity's state but not stored yet (replicated mode: it is
// published to JetStream first, and stored at the position the PubAck gives).
struct PlannedCommit {
  AppendResult result;                 // replay = true: already stored, nothing to publish
  std::vector<StoredEvent> events;     // versions, time, state and ids filled; position 0
  int64_t expected_last_position = 0;  // the entity's last commit position (0: new entity)
};

// Why a replicated stream refuses writes.
enum class StreamHealth { kOk, kReset, kDiverged };

struct EntityEvents {
  std::vector<StoredEvent> events;
  int64_t version = 0;          // the entity's current version
  std::optional<int64_t> next;  // the next version to ask for; empty at the end
};

struct StreamPage {
  std::vector<StoredEvent> events;
  int64_t next = 0;  // the cursor for the following page: the last position scanned
};

struct EntitySummary {
  std::string id;
  int64_t version = 0;
  bool deleted = false;
};

struct EntityList {
  std::vector<EntitySummary> entities;
  std::optional<std::string> next;  // pass as `after` for the next page; empty at the end
};

// Which state to fold: the current one, at a version, or at a time (the last version whose
// time <= at). At most one of the two is set.
struct StateQuery {
  std::optional<int64_t> version;
  std::optional<TimeMicros> at;
};

struct StreamStats {
  std::string name;
  int64_t entities = 0;
  int64_t commits = 0;
  int64_t events = 0;
  int64_t last_position = 0;
  int64_t watermark = 0;
  // Commits whose entity index entries are still in memory only (docs/architecture.md, "Entity
  // index"): about EventLogOptions::index_tail_commits under steady writes.
  int64_t unindexed_commits = 0;
};

class EventLog {
 public:
  // Opens or creates the log, migrating its schema, and registers the streams it serves.
  // Fails with Invalid when the file was created in the other LogMode.
  static Result<std::unique_ptr<EventLog>> Open(const EventLogOptions& options,
                                                const std::vector<StreamSpec>& streams);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  using AppendCallback = std::function<void(Result<AppendResult>)>;

  // Appends one commit. `done` runs exactly once: on the caller's thread when the request is
  // refused before queueing (bad input, unknown stream, schema), otherwise on the writer thread
  // after the commit is durable or refused. It must not block.
  void AppendAsync(AppendRequest request, AppendCallback done);
  // The same, waiting for the answer.
  Result<AppendResult> Append(AppendRequest request);

  // The entity's events from `from_version` (inclusive), at least `limit` unless the end comes
  // first, never splitting a commit. NotFound when the entity has no events.
  Result<EntityEvents> ReadEntity(const std::string& stream, const std::string& entity,
                                  int64_t from_version, int limit) const;

  // Events after position `after` (exclusive) up to the watermark, in order, optionally only of
  // `types`, at least `limit` unless the end comes first, never splitting a commit.
  Result<StreamPage> ReadStream(const std::string& stream, int64_t after, int limit,
                                const std::set<std::string>& types = {}) const;

  // Entity ids starting with `prefix`, after `after`, in byte order.
  Result<EntityList> ListEntities(const std::string& stream, const std::string& prefix,
                                  const std::string& after, int limit) const;

  // The entity's folded state. NotFound when it has no events (or none at/before `at`); Gone
  // (with current_version) when the folded state is deleted.
  Result<EntityState> State(const std::string& stream, const std::string& entity,
                            const StateQuery& query = {}) const;

  Result<StreamStats> Stats(const std::string& stream) const;
  std::vector<std::string> StreamNames() const;
  bool HasStream(const std::string& stream) const;

  // The stream's watermark: every commit up to it is in the log. -1 for an unknown stream.
  int64_t Watermark(const std::string& stream) const;

  // Registers `fn(stream, watermark)`, called on the writer thread after each group commit that
  // moved a stream's watermark. It must not block. Returns an id for Unsubscribe.
  int Subscribe(std::function<void(const std::string&, int64_t)> fn);
  void Unsubscribe(int id);

  // --- Replicated mode (JetStream holds the durable copy; see docs/replication.md).

  // Checks an append like AppendAsync does (ids first, then deletion, version, rules) without
  // storing anything. Blocks until the writer thread answered.
  Result<PlannedCommit> Plan(AppendRequest request);
  // The same without waiting: `done` runs on the writer thread. Missing ids are generated into
  // `*request`, which must stay untouched until `done` runs.
  using PlanCallback = std::function<void(Result<PlannedCommit>)>;
  void PlanAsync(std::shared_ptr<AppendRequest> request, PlanCallback done);

  // Stores a commit at JetStream position `position`, idempotently: a commit already stored
  // there with the same id is fine; another id marks the stream Diverged. Stored events are
  // never re-validated. `from_follower`: the ordered consumer delivered it in order, so the
  // watermark moves to `position`. `done` runs on the writer thread after the commit.
  void StoreCommitAsync(const std::string& stream, int64_t position, const std::string& commit_id,
                        std::vector<StoredEvent> events, bool from_follower, AppendCallback done);
  Result<AppendResult> StoreCommit(const std::string& stream, int64_t position,
                                   const std::string& commit_id, std::vector<StoredEvent> events,
                                   bool from_follower);

  // The JetStream stream identity recorded for `stream` ("" before the first connection).
  std::string Origin(const std::string& stream) const;
  Status SetOrigin(const std::string& stream, const std::string& origin);
  // What a reader keeping a position in `stream` compares to know it reads the same stream:
  // "jetstream:<created ns>" once replicated ("" before the first connection to JetStream), and
  // "log:<id of this log file>" standalone. It changes when the JetStream stream is recreated or
  // the sidecar starts on another file.
  std::string Identity(const std::string& stream) const;
  void SetHealth(const std::string& stream, StreamHealth health);
  StreamHealth Health(const std::string& stream) const;

  // Finishes queued appends and closes the database. Further appends answer Unavailable.
  void Close();

  // Size of the database files in bytes (main file + WAL).
  int64_t SizeBytes() const;
  const EventLogOptions& options() const;

  class Impl;

 private:
  explicit EventLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sidelog
