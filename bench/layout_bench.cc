// What the event log's table layout costs in SQLite alone, before any of Sidelog's own work:
// the same commits written through raw SQLite into
//   - schema 1 (the layout before schema.cc's migration 2): one row per event in `events`,
//     keyed by position, with two unique indexes (by entity and version, by id), a `commits`
//     row and an `entities` head row per commit;
//   - schema 2 (the current layout, a simplified copy): one row per commit holding its events
//     as a JSON array, indexed by entity and last version, plus one row per event id for
//     idempotency.
// Both with synchronous=NORMAL (no fsync: the layout's CPU and page cost only), 1 event x 16
// commits per transaction (group commit of 16 callers) and 100 events x 1 commit.
//
// Usage: layout_bench [--dir DIR] [--seconds S]
#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>

namespace {

using Clock = std::chrono::steady_clock;

std::string g_dir = "/tmp";
double g_seconds = 2.0;

const char* kPayload = R"({"amount":12.5,"currency":"EUR","note":"benchmark payload"})";

const char* kRowPerEventSchema = R"sql(
CREATE TABLE commits (stream_id INTEGER NOT NULL, position INTEGER NOT NULL, entity TEXT NOT NULL,
  commit_id TEXT NOT NULL, first_version INTEGER NOT NULL, last_version INTEGER NOT NULL,
  PRIMARY KEY (stream_id, position)) WITHOUT ROWID;
CREATE TABLE entities (stream_id INTEGER NOT NULL, entity TEXT NOT NULL, version INTEGER NOT NULL,
  time INTEGER NOT NULL, status TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (stream_id, entity)) WITHOUT ROWID;
CREATE TABLE events (stream_id INTEGER NOT NULL, position INTEGER NOT NULL, idx INTEGER NOT NULL,
  entity TEXT NOT NULL, version INTEGER NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL,
  time INTEGER NOT NULL, status TEXT NOT NULL, source TEXT NOT NULL, data TEXT NOT NULL,
  metadata TEXT, PRIMARY KEY (stream_id, position, idx)) WITHOUT ROWID;
CREATE UNIQUE INDEX events_by_entity ON events (stream_id, entity, version);
CREATE UNIQUE INDEX events_by_id ON events (stream_id, id, entity);
)sql";

const char* kCommitRowSchema = R"sql(
CREATE TABLE commits (stream_id INTEGER NOT NULL, position INTEGER NOT NULL, entity TEXT NOT NULL,
  first_version INTEGER NOT NULL, last_version INTEGER NOT NULL, events TEXT NOT NULL,
  PRIMARY KEY (stream_id, position)) WITHOUT ROWID;
CREATE UNIQUE INDEX commits_by_entity ON commits (stream_id, entity, last_version);
CREATE TABLE ids (stream_id INTEGER NOT NULL, id TEXT NOT NULL, entity TEXT NOT NULL,
  position INTEGER NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (stream_id, id, entity)) WITHOUT ROWID;
CREATE TABLE entities (stream_id INTEGER NOT NULL, entity TEXT NOT NULL, version INTEGER NOT NULL,
  time INTEGER NOT NULL, status TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (stream_id, entity)) WITHOUT ROWID;
)sql";

struct Db {
  sqlite3* db = nullptr;
  sqlite3_stmt* Prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK) {
      std::fprintf(stderr, "prepare: %s\n", sqlite3_errmsg(db));
      std::exit(1);
    }
    return s;
  }
};

void Run(sqlite3_stmt* s) {
  if (sqlite3_step(s) != SQLITE_DONE) {
    std::fprintf(stderr, "step: %s\n", sqlite3_errmsg(sqlite3_db_handle(s)));
    std::exit(1);
  }
  sqlite3_reset(s);
}

// Events/s written with `per_commit` events per commit and `commits_per_txn` commits per
// transaction, into the row-per-event layout (schema 1) or the commit-per-row one (schema 2).
double EventsPerSecond(bool commit_rows, int per_commit, int commits_per_txn, bool entity_head) {
  const std::string path = g_dir + "/layout_bench.db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  Db d;
  sqlite3_open(path.c_str(), &d.db);
  sqlite3_exec(d.db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-16000;",
               nullptr, nullptr, nullptr);
  sqlite3_exec(d.db, commit_rows ? kCommitRowSchema : kRowPerEventSchema, nullptr, nullptr,
               nullptr);
  // Each layout prepares only the statements of its own tables.
  sqlite3_stmt* event =
      commit_rows ? nullptr
                  : d.Prepare(
                        "INSERT INTO events VALUES (1, ?, ?, ?, ?, ?, 'PaymentReceived', "
                        "1700000000000000, '', '/namespaces/bench/services/bench', ?, NULL)");
  sqlite3_stmt* commit = d.Prepare(
      commit_rows ? "INSERT INTO commits VALUES (1, ?, ?, ?, ?, ?)"
                  : "INSERT INTO commits VALUES (1, ?, ?, "
                    "'0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', ?, ?)");
  sqlite3_stmt* id = commit_rows ? d.Prepare("INSERT INTO ids VALUES (1, ?, ?, ?, ?)") : nullptr;
  sqlite3_stmt* head = d.Prepare(
      "INSERT INTO entities VALUES (1, ?, ?, 0, '', 0) ON CONFLICT DO UPDATE SET version = "
      "excluded.version");
  std::mt19937 rng(1);
  std::vector<int64_t> versions(1024, 0);
  int64_t position = 0, events = 0;
  std::string array;
  char event_id[48];
  const auto start = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - start).count() < g_seconds) {
    sqlite3_exec(d.db, "BEGIN", nullptr, nullptr, nullptr);
    for (int c = 0; c < commits_per_txn; ++c) {
      ++position;
      const int e = static_cast<int>(rng() % versions.size());
      std::string entity = "e";
      entity += std::to_string(e);
      const int64_t first = versions[e] + 1;
      versions[e] += per_commit;
      if (commit_rows) {
        array.assign(1, '[');
        for (int i = 0; i < per_commit; ++i) {
          if (i) array += ',';
          array += R"({"id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","type":"PaymentReceived",)"
                   R"("time":1700000000000000,"state":"","data":)";
          array += kPayload;
          array += '}';
        }
        array += ']';
        sqlite3_bind_int64(commit, 1, position);
        sqlite3_bind_text(commit, 2, entity.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(commit, 3, first);
        sqlite3_bind_int64(commit, 4, versions[e]);
        sqlite3_bind_text(commit, 5, array.data(), static_cast<int>(array.size()), SQLITE_STATIC);
        Run(commit);
        for (int i = 0; i < per_commit; ++i) {
          std::snprintf(event_id, sizeof event_id, "0190a1b2-%012lld-%04d",
                        static_cast<long long>(position), i);
          sqlite3_bind_text(id, 1, event_id, -1, SQLITE_TRANSIENT);
          sqlite3_bind_text(id, 2, entity.c_str(), -1, SQLITE_TRANSIENT);
          sqlite3_bind_int64(id, 3, position);
          sqlite3_bind_int(id, 4, i);
          Run(id);
        }
      } else {
        for (int i = 0; i < per_commit; ++i) {
          std::snprintf(event_id, sizeof event_id, "0190a1b2-%012lld-%04d",
                        static_cast<long long>(position), i);
          sqlite3_bind_int64(event, 1, position);
          sqlite3_bind_int(event, 2, i);
          sqlite3_bind_text(event, 3, entity.c_str(), -1, SQLITE_TRANSIENT);
          sqlite3_bind_int64(event, 4, first + i);
          sqlite3_bind_text(event, 5, event_id, -1, SQLITE_TRANSIENT);
          sqlite3_bind_text(event, 6, kPayload, -1, SQLITE_STATIC);
          Run(event);
        }
        sqlite3_bind_int64(commit, 1, position);
        sqlite3_bind_text(commit, 2, entity.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(commit, 3, first);
        sqlite3_bind_int64(commit, 4, versions[e]);
        Run(commit);
      }
      if (entity_head) {
        sqlite3_bind_text(head, 1, entity.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(head, 2, versions[e]);
        Run(head);
      }
      events += per_commit;
    }
    sqlite3_exec(d.db, "COMMIT", nullptr, nullptr, nullptr);
  }
  const double rate =
      static_cast<double>(events) / std::chrono::duration<double>(Clock::now() - start).count();
  for (sqlite3_stmt* s : {event, commit, id, head}) sqlite3_finalize(s);  // NULL is a no-op
  sqlite3_close(d.db);
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--dir") && i + 1 < argc) g_dir = argv[++i];
    if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) g_seconds = std::atof(argv[++i]);
  }
  std::printf("layout_bench: raw SQLite %s, synchronous=NORMAL, %.1f s per figure\n\n",
              sqlite3_libversion(), g_seconds);
  std::printf("%-46s %14s %14s %7s\n", "events/s written by raw SQLite", "row/event (1)",
              "row/commit (2)", "ratio");
  struct Case {
    const char* name;
    int per_commit, per_txn;
    bool head;
  };
  for (const Case& c : {Case{"1 event x 16 commits per transaction", 1, 16, true},
                        Case{"  the same without the entity head row", 1, 16, false},
                        Case{"100 events x 1 commit per transaction", 100, 1, true}}) {
    const double per_event = EventsPerSecond(false, c.per_commit, c.per_txn, c.head);
    const double rows = EventsPerSecond(true, c.per_commit, c.per_txn, c.head);
    std::printf("%-46s %14.0f %14.0f %6.2fx\n", c.name, per_event, rows, rows / per_event);
  }
  return 0;
}
