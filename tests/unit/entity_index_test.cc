// The entity index (schema 5): entity_commits on disk, merged in bulk from the writer's
// in-memory tail. Every entity read must see exactly the commits of its snapshot whatever the
// tail holds: right after a merge, across reopening, with commits stored above a replicated
// stream's watermark, and after a rolled-back commit.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "sidelog/event_log.h"
#include "test_util.h"

namespace sidelog {
namespace {

using sidelog::testing::Ev;
using sidelog::testing::MustCompile;
using sidelog::testing::Req;
using sidelog::testing::TempDir;

constexpr const char* kCounterRules =
    R"({"reducers":{"Add":[{"op":"increment","path":"/n","from":"/by"}]}})";

int64_t CountRows(const std::string& path, const std::string& table) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, ("SELECT count(*) FROM " + table).c_str(), -1, &stmt, nullptr),
            SQLITE_OK);
  int64_t n = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return n;
}

class EntityIndex : public ::testing::Test {
 protected:
  std::unique_ptr<EventLog> Open(size_t tail_commits, LogMode mode = LogMode::kStandalone) {
    EventLogOptions o;
    o.path = dir_.File("log.db");
    o.mode = mode;
    o.durability = Durability::kNormal;
    o.snapshot_every = 4;
    o.index_tail_commits = tail_commits;
    auto log = EventLog::Open(o, {{"counters", MustCompile(kCounterRules)}});
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return log.ok() ? std::move(log).value() : nullptr;
  }

  TempDir dir_;
};

// What a model of the appends says an entity must read as.
void ExpectEntityMatches(EventLog& log, const std::string& entity,
                         const std::vector<int>& increments, std::mt19937& rng) {
  SCOPED_TRACE(entity);
  auto read = log.ReadEntity("counters", entity, 1, 1000);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->version, static_cast<int64_t>(increments.size()));
  ASSERT_EQ(read->events.size(), increments.size());
  int sum = 0;
  for (size_t i = 0; i < increments.size(); ++i) {
    EXPECT_EQ(read->events[i].version, static_cast<int64_t>(i + 1));
    EXPECT_EQ(read->events[i].data["by"], increments[i]);
    sum += increments[i];
  }
  auto state = log.State("counters", entity);
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  EXPECT_EQ(state->version, read->version);
  EXPECT_EQ(state->state["n"], sum);

  const size_t v = std::uniform_int_distribution<size_t>(1, increments.size())(rng);
  StateQuery at_version;
  at_version.version = static_cast<int64_t>(v);
  auto past = log.State("counters", entity, at_version);
  ASSERT_TRUE(past.ok()) << past.status().ToString();
  int prefix = 0;
  for (size_t i = 0; i < v; ++i) prefix += increments[i];
  EXPECT_EQ(past->state["n"], prefix);

  // At the time of event v: the last version whose time is not after it.
  StateQuery at_time;
  at_time.at = read->events[v - 1].time;
  int64_t expected = 0;
  for (const auto& e : read->events) {
    if (e.time <= *at_time.at) expected = e.version;
  }
  auto then = log.State("counters", entity, at_time);
  ASSERT_TRUE(then.ok()) << then.status().ToString();
  EXPECT_EQ(then->version, expected);

  // A page from a version in the middle starts at that version's commit.
  auto page = log.ReadEntity("counters", entity, static_cast<int64_t>(v), 1);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_FALSE(page->events.empty());
  EXPECT_EQ(page->events.front().version, static_cast<int64_t>(v));
}

TEST_F(EntityIndex, ReadsMatchAModelThroughMergesAndReopens) {
  std::mt19937 rng(20261127);
  std::map<std::string, std::vector<int>> model;
  int64_t commits = 0;
  // Index every commit at once, keep 3 or 1 unindexed, or never index; reopening in between
  // finds the unindexed commits again.
  const std::vector<size_t> tails = {0, 3, 1000, 1};
  for (size_t round = 0; round < tails.size(); ++round) {
    auto log = Open(tails[round]);
    ASSERT_NE(log, nullptr);
    for (const auto& [entity, increments] : model)
      ExpectEntityMatches(*log, entity, increments, rng);
    for (int step = 0; step < 80; ++step) {
      const std::string entity = "c" + std::to_string(rng() % 12);
      std::vector<EventInput> events;
      const int n = 1 + static_cast<int>(rng() % 3);
      for (int i = 0; i < n; ++i) {
        const int by = static_cast<int>(rng() % 100);
        events.push_back(Ev("Add", {{"by", by}}));
        model[entity].push_back(by);
      }
      auto r = log->Append(Req("counters", entity, std::move(events)));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      ++commits;
      ExpectEntityMatches(*log, entity, model[entity], rng);
    }
    auto list = log->ListEntities("counters", "c", "", 100);
    ASSERT_TRUE(list.ok()) << list.status().ToString();
    ASSERT_EQ(list->entities.size(), model.size());
    for (const auto& e : list->entities) {
      EXPECT_EQ(e.version, static_cast<int64_t>(model[e.id].size())) << e.id;
    }
    auto stats = log->Stats("counters");
    ASSERT_TRUE(stats.ok());
    EXPECT_LE(stats->unindexed_commits, static_cast<int64_t>(tails[round]));
    log->Close();
    const int64_t indexed = CountRows(dir_.File("log.db"), "entity_commits");
    EXPECT_EQ(indexed + stats->unindexed_commits, commits) << "each commit in one place";
    if (tails[round] == 0) {
      EXPECT_EQ(indexed, commits) << "every commit indexed at once";
    } else if (tails[round] == 1000) {
      EXPECT_LT(indexed, commits) << "nothing indexed in this round";
    } else {
      EXPECT_GE(indexed, commits - static_cast<int64_t>(tails[round])) << "at most that many wait";
    }
  }
}

TEST_F(EntityIndex, ConcurrentReadersSeeEveryCommitWhileTheIndexMerges) {
  auto log = Open(2);
  ASSERT_NE(log, nullptr);
  constexpr int kWriters = 4, kEntitiesPerWriter = 3, kAppends = 150;
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  writers.reserve(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      std::vector<int64_t> versions(kEntitiesPerWriter, 0);
      for (int i = 0; i < kAppends; ++i) {
        const int k = i % kEntitiesPerWriter;
        auto r = log->Append(Req("counters", "w" + std::to_string(w) + "-" + std::to_string(k),
                                 {Ev("Add", {{"by", 1}})}, ExpectedVersion::Exactly(versions[k])));
        if (!r.ok()) ++failures;
        versions[k] = r.ok() ? r->version : versions[k];
      }
    });
  }
  std::vector<std::thread> readers;
  readers.reserve(2);
  std::atomic<int64_t> reads{0};
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      std::map<std::string, int64_t> seen;
      std::mt19937 rng(t);
      while (!done) {
        const std::string entity = "w" + std::to_string(rng() % kWriters) + "-" +
                                   std::to_string(rng() % kEntitiesPerWriter);
        auto read = log->ReadEntity("counters", entity, 1, 1000);
        if (!read.ok()) {
          if (read.status().code() != Status::Code::kNotFound) ++failures;
          continue;
        }
        // Every version from 1 to the current one, none missing or repeated, never going back.
        bool gapless = static_cast<int64_t>(read->events.size()) == read->version;
        for (size_t i = 0; gapless && i < read->events.size(); ++i) {
          gapless = read->events[i].version == static_cast<int64_t>(i + 1);
        }
        if (!gapless || read->version < seen[entity]) ++failures;
        seen[entity] = read->version;
        auto state = log->State("counters", entity);
        if (!state.ok() || state->version < read->version || state->state["n"] != state->version) {
          ++failures;
        }
        ++reads;
      }
    });
  }
  for (auto& th : writers) th.join();
  done = true;
  for (auto& th : readers) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(reads.load(), 0);
  for (int w = 0; w < kWriters; ++w) {
    for (int k = 0; k < kEntitiesPerWriter; ++k) {
      auto state = log->State("counters", "w" + std::to_string(w) + "-" + std::to_string(k));
      ASSERT_TRUE(state.ok()) << state.status().ToString();
      EXPECT_EQ(state->version, kAppends / kEntitiesPerWriter);
    }
  }
}

// A replicated commit as the follower or a PubAck would store it.
std::vector<StoredEvent> Commit(const std::string& entity, int64_t first_version, int count,
                                const std::string& id_prefix) {
  std::vector<StoredEvent> events;
  for (int i = 0; i < count; ++i) {
    StoredEvent e;
    e.id = id_prefix + "-" + std::to_string(i);
    e.stream = "counters";
    e.entity = entity;
    e.type = "Add";
    e.source = "/namespaces/default/services/counter";
    e.data = {{"by", 1}};
    e.version = first_version + i;
    e.index = i;
    e.time = 1'000'000 * (first_version + i);
    events.push_back(std::move(e));
  }
  return events;
}

TEST_F(EntityIndex, ReplicatedCommitsStoredOutOfPositionOrderAreFoundAgainAfterReopening) {
  // One commit may wait unindexed: storing a second one indexes the oldest entity's.
  auto log = Open(1, LogMode::kReplicated);
  ASSERT_NE(log, nullptr);
  // A PubAck stored b at position 3 before the follower delivered 1 and 2.
  ASSERT_TRUE(log->StoreCommit("counters", 3, "c3", Commit("b", 1, 2, "b1"), false).ok());
  ASSERT_TRUE(log->StoreCommit("counters", 1, "c1", Commit("a", 1, 1, "a1"), true).ok());
  auto b = log->State("counters", "b");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->version, 2);
  log->Close();
  // b's commit (position 3) is indexed; a's (position 1, below it) waits in memory.
  EXPECT_EQ(CountRows(dir_.File("log.db"), "entity_commits"), 1);

  log = Open(1, LogMode::kReplicated);
  ASSERT_NE(log, nullptr);
  for (const auto& [entity, version] : {std::pair{"a", 1}, std::pair{"b", 2}}) {
    auto read = log->ReadEntity("counters", entity, 1, 100);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_EQ(read->version, version) << entity;
    EXPECT_EQ(static_cast<int64_t>(read->events.size()), version) << entity;
  }
  // Each entity's next commit goes on top of what the reopened log found.
  ASSERT_TRUE(log->StoreCommit("counters", 2, "c2", Commit("a", 2, 1, "a2"), true).ok());
  ASSERT_TRUE(log->StoreCommit("counters", 3, "c3", Commit("b", 1, 2, "b1"), true).ok());
  ASSERT_TRUE(log->StoreCommit("counters", 4, "c4", Commit("b", 3, 1, "b3"), true).ok());
  auto read = log->ReadEntity("counters", "b", 1, 100);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->events.size(), 3u);
  EXPECT_EQ(read->events[2].version, 3);
  EXPECT_EQ(read->events[2].position, 4);
  auto a = log->State("counters", "a");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->version, 2);
  EXPECT_EQ(a->state["n"], 2);
  log->Close();
  EXPECT_GE(CountRows(dir_.File("log.db"), "entity_commits"), 3);
}

TEST_F(EntityIndex, AReplicaStoringBelowItsLastPositionKeepsThatCommitFindable) {
  auto log = Open(1, LogMode::kReplicated);
  ASSERT_NE(log, nullptr);
  // Two PubAcks of x: the second makes two unindexed commits, so both are indexed and nothing
  // waits any more.
  ASSERT_TRUE(log->StoreCommit("counters", 5, "c5", Commit("x", 1, 1, "x1"), false).ok());
  ASSERT_TRUE(log->StoreCommit("counters", 6, "c6", Commit("x", 2, 1, "x2"), false).ok());
  // A PubAck below the last position: neither it nor the watermark moves.
  ASSERT_TRUE(log->StoreCommit("counters", 3, "c3", Commit("y", 1, 1, "y1"), false).ok());
  log->Close();
  log = Open(1, LogMode::kReplicated);
  ASSERT_NE(log, nullptr);
  auto y = log->ReadEntity("counters", "y", 1, 100);
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  EXPECT_EQ(y->version, 1);
  auto x = log->State("counters", "x");
  ASSERT_TRUE(x.ok()) << x.status().ToString();
  EXPECT_EQ(x->version, 2);
}

// Positions share commits' integer key with the stream's id (schema 6): one beyond 2^40 - 1
// would land in the next stream's range, so it is refused and nothing is stored.
TEST_F(EntityIndex, AReplicatedPositionBeyondTheKeyRangeIsRefused) {
  auto log = Open(1, LogMode::kReplicated);
  ASSERT_NE(log, nullptr);
  const int64_t too_far = int64_t{1} << 40;
  auto refused = log->StoreCommit("counters", too_far, "c", Commit("a", 1, 1, "a1"), true);
  EXPECT_EQ(refused.status().code(), Status::Code::kInvalid);
  EXPECT_NE(refused.status().message().find("outside 1..1099511627775"), std::string::npos)
      << refused.status().ToString();
  auto last = log->StoreCommit("counters", too_far - 1, "c", Commit("a", 1, 1, "a1"), true);
  ASSERT_TRUE(last.ok()) << last.status().ToString();
  auto read = log->ReadEntity("counters", "a", 1, 100);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->events.size(), 1u);
  EXPECT_EQ(read->events[0].position, too_far - 1);
}

TEST_F(EntityIndex, ACommitThatRollsBackLeavesNothingInTheTail) {
  auto log = Open(1000, LogMode::kReplicated);
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->StoreCommit("counters", 1, "c1", Commit("a", 1, 1, "dup"), true).ok());
  // The same event id again for the entity: its id row fails after the commit row was
  // written, and the commit rolls back.
  auto refused = log->StoreCommit("counters", 2, "c2", Commit("a", 2, 1, "dup"), true);
  ASSERT_FALSE(refused.ok());
  auto read = log->ReadEntity("counters", "a", 1, 100);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->version, 1);
  EXPECT_EQ(read->events.size(), 1u);
  // Position 2 holds another commit now; the entity reads it once.
  ASSERT_TRUE(log->StoreCommit("counters", 2, "c2b", Commit("a", 2, 1, "fresh"), true).ok());
  read = log->ReadEntity("counters", "a", 1, 100);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->events.size(), 2u);
  EXPECT_EQ(read->events[1].id, "fresh-0");
  auto state = log->State("counters", "a");
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  EXPECT_EQ(state->state["n"], 2);
}

}  // namespace
}  // namespace sidelog
