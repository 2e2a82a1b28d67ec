// Crash safety: a child process appends in a loop and reports each acknowledged append on a pipe;
// the parent kills it with SIGKILL at a random moment. The reopened log must pass
// PRAGMA integrity_check and hold every acknowledged append.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <random>
#include <set>

#include "sidelog/event_log.h"
#include "test_util.h"

namespace sidelog {
namespace {

using sidelog::testing::Ev;
using sidelog::testing::Req;
using sidelog::testing::TempDir;

// `index_tail`: how many commits the entity index keeps in memory before merging them; a
// small one has merges in flight when the kill lands, the default none.
EventLogOptions Options(const TempDir& dir, size_t index_tail) {
  EventLogOptions o;
  o.path = dir.File("log.db");
  o.durability = Durability::kFsync;
  o.index_tail_commits = index_tail;
  return o;
}

[[noreturn]] void AppendForever(const TempDir& dir, size_t index_tail, int fd) {
  auto log = EventLog::Open(Options(dir, index_tail), {{"orders", nullptr}});
  if (!log.ok()) _exit(3);
  // Several threads, so group commits of many appends are in flight when the kill lands.
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0;; ++i) {
        std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        auto r = (*log)->Append(Req("orders", "e" + std::to_string(t),
                                    {Ev("A", {{"i", i}}, id), Ev("B", {}, id + "b")}));
        if (!r.ok()) _exit(4);
        std::string line = id + "\n";
        if (write(fd, line.data(), line.size()) < 0) _exit(5);
      }
    });
  }
  for (auto& t : threads) t.join();
  _exit(0);
}

TEST(CrashSafety, Sigkill_LosesNoAcknowledgedAppend) {
  std::mt19937 rng(std::random_device{}());
  for (int round = 0; round < 6; ++round) {
    const size_t index_tail = round % 2 == 0 ? 5 : EventLogOptions().index_tail_commits;
    SCOPED_TRACE("index tail " + std::to_string(index_tail));
    TempDir dir;
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      AppendForever(dir, index_tail, fds[1]);
    }
    close(fds[1]);
    // Wait for its first acknowledgement (a loaded machine may take a while to get there), let
    // it run for a random while more, then kill it mid-write.
    std::string buf;
    char chunk[4096];
    ssize_t n;
    while (buf.find('\n') == std::string::npos && (n = read(fds[0], chunk, sizeof chunk)) > 0) {
      buf.append(chunk, static_cast<size_t>(n));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 300));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the child exited by itself with " << WEXITSTATUS(status);

    std::set<std::string> acked;
    while ((n = read(fds[0], chunk, sizeof chunk)) > 0) buf.append(chunk, static_cast<size_t>(n));
    close(fds[0]);
    for (size_t start = 0, nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      acked.insert(buf.substr(start, nl - start));
    }
    ASSERT_GT(acked.size(), 0u) << "the child acknowledged nothing before the kill";

    {
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open(dir.File("log.db").c_str(), &db), SQLITE_OK);
      sqlite3_stmt* st = nullptr;
      sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr);
      ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
      EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "ok");
      sqlite3_finalize(st);
      sqlite3_close(db);
    }

    auto log = EventLog::Open(Options(dir, index_tail), {{"orders", nullptr}});
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    std::set<std::string> stored;
    std::map<std::string, int64_t> stored_by_entity;
    int64_t from = 0;
    for (;;) {
      auto page = (*log)->ReadStream("orders", from, 1000);
      ASSERT_TRUE(page.ok());
      if (page->events.empty()) break;
      for (const auto& e : page->events) {
        if (e.type == "A") {
          EXPECT_TRUE(stored.insert(e.id).second) << "duplicate " << e.id;
          stored_by_entity[e.entity] += 2;
        }
      }
      from = page->next;
    }
    for (const auto& id : acked) EXPECT_TRUE(stored.count(id)) << "acknowledged " << id << " lost";
    // Versions per entity have no gaps after recovery, the entity reads hold what the stream
    // holds, and the next append continues from there.
    for (int t = 0; t < 4; ++t) {
      const std::string entity = "e" + std::to_string(t);
      int64_t expect = 1;
      std::optional<int64_t> next = 1;
      while (next) {
        auto events = (*log)->ReadEntity("orders", entity, *next, 1000);
        if (!events.ok()) break;
        for (const auto& e : events->events) EXPECT_EQ(e.version, expect++);
        next = events->next;
      }
      EXPECT_EQ(expect - 1, stored_by_entity[entity]) << entity;
      auto more = (*log)->Append(Req("orders", entity, {Ev("A", {{"i", -1}})}));
      ASSERT_TRUE(more.ok()) << more.status().ToString();
      EXPECT_EQ(more->version, stored_by_entity[entity] + 1) << entity;
    }
  }
}

}  // namespace
}  // namespace sidelog
