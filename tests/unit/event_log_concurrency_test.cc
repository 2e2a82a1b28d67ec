// Group commit under contention: many threads, one entity or many.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "sidelog/event_log.h"
#include "test_util.h"

namespace sidelog {
namespace {

using sidelog::testing::Ev;
using sidelog::testing::Req;
using sidelog::testing::TempDir;

std::unique_ptr<EventLog> OpenLog(const TempDir& dir) {
  EventLogOptions o;
  o.path = dir.File("log.db");
  o.durability = Durability::kFsync;
  auto log = EventLog::Open(o, {{"orders", nullptr}});
  EXPECT_TRUE(log.ok()) << log.status().ToString();
  return std::move(log).value();
}

// 16 threads race on one entity with expected versions: each version has exactly one winner,
// versions have no gaps, and no event is stored twice.
TEST(EventLogConcurrency, OneWinnerPerVersionOnOneEntity) {
  TempDir dir;
  auto log = OpenLog(dir);
  constexpr int kThreads = 16;
  constexpr int kTarget = 200;
  std::atomic<int> conflicts{0};
  std::vector<std::vector<std::pair<int64_t, std::string>>> wins(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      int64_t known = 0;
      for (int attempt = 0; attempt < 20000; ++attempt) {
        std::string id = "t" + std::to_string(t) + "-" + std::to_string(attempt);
        auto r = log->Append(
            Req("orders", "hot", {Ev("Bumped", {{"by", t}}, id)}, ExpectedVersion::Exactly(known)));
        if (r.ok()) {
          ASSERT_EQ(r->version, known + 1);
          wins[t].push_back({r->version, id});
          known = r->version;
        } else {
          ASSERT_EQ(r.status().code(), Status::Code::kConflict) << r.status().ToString();
          conflicts++;
          known = *r.status().context().current_version;
        }
        if (known >= kTarget) return;
      }
    });
  }
  for (auto& th : threads) th.join();

  std::map<int64_t, std::string> by_version;
  for (const auto& w : wins) {
    for (const auto& [version, id] : w) {
      EXPECT_TRUE(by_version.emplace(version, id).second) << "two winners for version " << version;
    }
  }
  auto events = log->ReadEntity("orders", "hot", 1, 1000);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->events.size(), by_version.size());
  for (size_t i = 0; i < events->events.size(); ++i) {
    EXPECT_EQ(events->events[i].version, static_cast<int64_t>(i + 1));
    EXPECT_EQ(events->events[i].id, by_version[static_cast<int64_t>(i + 1)]);
  }
  EXPECT_GT(conflicts.load(), 0);
}

// 16 threads on 16 entities: every append succeeds, and positions are unique.
TEST(EventLogConcurrency, DistinctEntitiesAllSucceed) {
  TempDir dir;
  auto log = OpenLog(dir);
  constexpr int kThreads = 16;
  constexpr int kPerThread = 100;
  std::vector<std::vector<int64_t>> positions(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto r = log->Append(Req("orders", "e" + std::to_string(t), {Ev("A", {{"i", i}})},
                                 ExpectedVersion::Exactly(i)));
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        ASSERT_EQ(r->version, i + 1);
        positions[t].push_back(r->position);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<int64_t> all;
  for (const auto& p : positions) all.insert(p.begin(), p.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(*all.rbegin(), kThreads * kPerThread);  // local positions are contiguous
  auto stats = log->Stats("orders");
  EXPECT_EQ(stats->events, kThreads * kPerThread);
  EXPECT_EQ(stats->entities, kThreads);
  // A stream read sees every commit once, in position order.
  int64_t from = 0, seen = 0, last = 0;
  for (;;) {
    auto page = log->ReadStream("orders", from, 1000);
    if (page->events.empty()) break;
    for (const auto& e : page->events) {
      EXPECT_GT(e.position, last);
      last = e.position;
      ++seen;
    }
    from = page->next;
  }
  EXPECT_EQ(seen, kThreads * kPerThread);
}

// A synchronous Append on an idle log runs on its caller's thread (EventLog::Impl::
// TryAppendInline) while async appends go through the writer: both paths share one entity
// without a lost, duplicated or out-of-order version, and positions stay contiguous.
TEST(EventLogConcurrency, SynchronousAndQueuedAppendsInterleaveWithoutGapsOrDuplicates) {
  TempDir dir;
  auto log = OpenLog(dir);
  constexpr int kSync = 300;
  constexpr int kAsync = 300;
  std::mutex mu;
  std::set<int64_t> versions, positions;
  std::atomic<int> async_done{0};
  auto record = [&](const Result<AppendResult>& r) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(versions.insert(r->version).second) << "version " << r->version << " twice";
    EXPECT_TRUE(positions.insert(r->position).second) << "position " << r->position << " twice";
  };
  std::thread sync_caller([&] {
    for (int i = 0; i < kSync; ++i) record(log->Append(Req("orders", "shared", {Ev("Sync")})));
  });
  std::thread async_caller([&] {
    for (int i = 0; i < kAsync; ++i) {
      log->AppendAsync(Req("orders", "shared", {Ev("Async")}), [&](const Result<AppendResult>& r) {
        record(r);
        async_done++;
      });
      if (i % 10 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  sync_caller.join();
  async_caller.join();
  for (int i = 0; i < 1000 && async_done.load() < kAsync; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(async_done.load(), kAsync);
  EXPECT_EQ(versions.size(), static_cast<size_t>(kSync + kAsync));
  EXPECT_EQ(*versions.rbegin(), kSync + kAsync);
  EXPECT_EQ(*positions.rbegin(), kSync + kAsync);
  auto read = log->ReadEntity("orders", "shared", 1, kSync + kAsync);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->events.size(), static_cast<size_t>(kSync + kAsync));
  for (size_t i = 0; i < read->events.size(); ++i) {
    EXPECT_EQ(read->events[i].version, static_cast<int64_t>(i) + 1);
  }
}

// Closing while callers append synchronously: every call returns, each one acknowledged is
// stored, and the others are Unavailable.
TEST(EventLogConcurrency, CloseDuringSynchronousAppendsLosesNothingAcknowledged) {
  TempDir dir;
  auto log = OpenLog(dir);
  std::atomic<int> ok{0}, unavailable{0}, other{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 3; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < 400; ++i) {
        auto r = log->Append(Req("orders", "c" + std::to_string(t), {Ev("A", {{"i", i}})}));
        if (r.ok()) {
          ok++;
        } else if (r.status().code() == Status::Code::kUnavailable) {
          unavailable++;
        } else {
          other++;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  log->Close();
  for (auto& th : callers) th.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(ok.load() + unavailable.load(), 3 * 400);
  EXPECT_GT(ok.load(), 0);
  log.reset();
  auto reopened = OpenLog(dir);
  EXPECT_EQ(reopened->Stats("orders")->events, ok.load());
}

// Async appends are answered exactly once each, also when the log closes with a full queue.
TEST(EventLogConcurrency, CloseAnswersEveryQueuedAppend) {
  TempDir dir;
  auto log = OpenLog(dir);
  std::atomic<int> ok{0}, unavailable{0};
  constexpr int kAppends = 500;
  for (int i = 0; i < kAppends; ++i) {
    log->AppendAsync(Req("orders", "e" + std::to_string(i % 7), {Ev("A")}),
                     [&](Result<AppendResult> r) {
                       if (r.ok()) {
                         ok++;
                       } else if (r.status().code() == Status::Code::kUnavailable) {
                         unavailable++;
                       }
                     });
  }
  log->Close();
  EXPECT_EQ(ok.load() + unavailable.load(), kAppends);
  EXPECT_EQ(ok.load(), kAppends);  // queued before Close: all finished
}

}  // namespace
}  // namespace sidelog

namespace sidelog {
namespace {

// A reader following the stream by its `next` cursor while writers append sees every commit:
// the watermark moves only after the commit is visible to readers.
TEST(EventLogConcurrency, AFollowingReaderNeverSkipsACommit) {
  sidelog::testing::TempDir dir;
  EventLogOptions o;
  o.path = dir.File("log.db");
  o.durability = Durability::kNormal;
  auto log = EventLog::Open(o, {{"orders", nullptr}});
  ASSERT_TRUE(log.ok());
  constexpr int kWriters = 4, kPerWriter = 300;
  std::atomic<bool> done{false};
  std::vector<int64_t> seen;
  std::thread reader([&] {
    int64_t from = 0;
    while (!done || from < kWriters * kPerWriter) {
      auto page = (*log)->ReadStream("orders", from, 50);
      ASSERT_TRUE(page.ok());
      for (const auto& e : page->events) seen.push_back(e.position);
      from = page->next;
    }
  });
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; ++i) {
        ASSERT_TRUE((*log)
                        ->Append(sidelog::testing::Req("orders", "e" + std::to_string(w),
                                                       {sidelog::testing::Ev("A")}))
                        .ok());
      }
    });
  }
  for (auto& t : writers) t.join();
  done = true;
  reader.join();
  ASSERT_EQ(seen.size(), static_cast<size_t>(kWriters * kPerWriter));
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], static_cast<int64_t>(i + 1));
}

}  // namespace
}  // namespace sidelog
