// The fault matrix of a standalone sidecar (docs/replication.md "What fails, and what happens"):
// a full disk, a slow and then stalled disk, and the wall clock jumping backwards. Each runs
// the real sidecar binary; a test build reads the disk delay and the clock offset from files
// the test writes while it runs (core/src/fault.h). Every test asserts that no acknowledged
// append is lost or stored twice, and that every refusal is a problem+json that says why.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "command.h"
#include "raw_http.h"
#include "sidecar_process.h"

namespace sidelog::testing {
namespace {

using Clock = std::chrono::steady_clock;

RawResponse Append(const SidecarProcess& p, const std::string& entity, const Json& events) {
  return RawRequest(p.port(), "POST", "/v1/streams/orders/entities/" + entity + "/events",
                    Json{{"events", events}}.dump());
}

Json Item(const std::string& id, size_t padding = 0) {
  return Json::array(
      {{{"id", id}, {"type", "ItemAdded"}, {"data", {{"item", std::string(padding, 'x')}}}}});
}

// Every event id of the stream, in order (duplicates kept, so a test can see them).
std::vector<std::string> StreamIds(const SidecarProcess& p) {
  std::vector<std::string> ids;
  int64_t from = 0;
  for (int pages = 0; pages < 1000; ++pages) {
    auto page = RawRequest(p.port(), "GET",
                           "/v1/streams/orders/events?limit=1000&from=" + std::to_string(from))
                    .json();
    if (!page.is_object() || page["events"].empty()) break;
    for (const auto& e : page["events"]) ids.push_back(e["id"]);
    from = page["next"];
  }
  return ids;
}

// The problem+json fields every refusal carries.
void ExpectProblem(const RawResponse& r, int status) {
  EXPECT_EQ(r.status, status) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/problem+json") << r.body;
  Json p = r.json();
  EXPECT_TRUE(p.is_object() && p["type"].is_string() && p["detail"].is_string()) << r.body;
}

std::string Sqlite(const std::string& db, const std::string& sql) {
  std::string out = RunCommand("sqlite3 '" + db + "' '" + sql + "' 2>&1");
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path + ".tmp");
  out << text;
  out.close();
  std::rename((path + ".tmp").c_str(), path.c_str());  // readers never see half a value
}

// A small tmpfs mounted on the sidecar's data directory, unmounted at the end.
class SmallDisk {
 public:
  SmallDisk(const std::string& dir, int mib) : dir_(dir) {
    std::filesystem::create_directories(dir);
    const std::string options = "size=" + std::to_string(mib) + "m";
    mounted_ = mount("sidelog-test", dir.c_str(), "tmpfs", 0, options.c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted_) umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  int64_t FreeBytes() const {
    struct statvfs s {};
    statvfs(dir_.c_str(), &s);
    return static_cast<int64_t>(s.f_bavail) * static_cast<int64_t>(s.f_frsize);
  }

 private:
  std::string dir_;
  bool mounted_ = false;
};

TEST(Fault, AFullDiskRefusesAppendsKeepsReadsAndRecoversWhenSpaceIsFreed) {
  SidecarProcess p;
  SmallDisk disk(p.dir() + "/data", 8);
  if (!disk.mounted()) GTEST_SKIP() << "mounting a tmpfs needs root (CAP_SYS_ADMIN)";
  p.Start();
  ASSERT_EQ(Append(p, "before", Item("before-0")).status, 201);

  // Leave about 1 MiB: a few dozen 16 KiB appends, then the disk is full.
  const std::string filler = p.dir() + "/data/filler";
  {
    std::ofstream out(filler, std::ios::binary);
    const std::string chunk(1 << 16, 'f');
    while (disk.FreeBytes() > (1 << 20) &&
           out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()))) {
    }
  }
  std::set<std::string> acknowledged = {"before-0"};
  RawResponse refused;
  for (int i = 0; i < 400 && refused.status == 0; ++i) {
    const std::string id = "fill-" + std::to_string(i);
    auto r = Append(p, "e" + std::to_string(i % 8), Item(id, 16 << 10));
    if (r.status == 201) {
      acknowledged.insert(id);
    } else {
      refused = r;
    }
  }
  ASSERT_NE(refused.status, 0) << "the disk never filled up";
  ExpectProblem(refused, 507);
  EXPECT_EQ(refused.json()["reason"], "DiskFull") << refused.body;
  EXPECT_NE(refused.header("retry-after"), "") << "a full disk is worth retrying later";
  // Still refused, still alive, reads still served.
  ExpectProblem(Append(p, "e0", Item("while-full", 16 << 10)), 507);
  EXPECT_FALSE(p.Exited()) << p.Log();
  auto state = RawRequest(p.port(), "GET", "/v1/streams/orders/entities/before");
  EXPECT_EQ(state.status, 200) << state.body;
  EXPECT_EQ(RawRequest(p.health_port(), "GET", "/livez").status, 200);

  std::filesystem::remove(filler);
  RawResponse after;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  do {
    after = Append(p, "after", Item("after-0"));
  } while (after.status != 201 && Clock::now() < deadline);
  ASSERT_EQ(after.status, 201) << "appends work again once space is freed: " << after.body;
  acknowledged.insert("after-0");

  auto ids = StreamIds(p);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()), acknowledged)
      << "exactly the acknowledged appends are stored";
  EXPECT_EQ(ids.size(), acknowledged.size()) << "none twice";
  p.Kill(SIGTERM);
  EXPECT_EQ(Sqlite(p.dir() + "/data/sidelog.db", "PRAGMA integrity_check"), "ok");
}

TEST(Fault, ASlowThenStalledDiskDelaysAppendsLosesNothingAndShutdownCompletes) {
  SidecarProcess p;
  const std::string delay = p.dir() + "/disk-delay-ms";
  WriteFile(delay, "0");
  p.SetEnv("SIDELOG_FAULT_DISK_DELAY_FILE", delay);
  p.Start();
  std::set<std::string> acknowledged;
  for (int i = 0; i < 10; ++i) {
    const std::string id = "fast-" + std::to_string(i);
    ASSERT_EQ(Append(p, "e", Item(id)).status, 201);
    acknowledged.insert(id);
  }

  // Slow: each write and sync takes 150 ms longer; an append still succeeds, later.
  WriteFile(delay, "150");
  // The process reads the file again at its first write 20 ms or more after the last read:
  // 50 ms from now, the next append sees the new delay for certain.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto t0 = Clock::now();
  auto slow = Append(p, "e", Item("slow-0"));
  const auto took = Clock::now() - t0;
  ASSERT_EQ(slow.status, 201) << slow.body;
  acknowledged.insert("slow-0");
  EXPECT_GE(took, std::chrono::milliseconds(150)) << "the delay reached the log's writes";

  // Stalled: 4 s per write. Appends wait (reads do not), and a SIGTERM still ends the process.
  WriteFile(delay, "4000");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto stalled = std::async(std::launch::async, [&p] { return Append(p, "e", Item("stalled")); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto read = RawRequest(p.port(), "GET", "/v1/streams/orders/entities/e");
  EXPECT_EQ(read.status, 200) << "reads are served while the disk stalls: " << read.body;
  const auto term = Clock::now();
  kill(p.pid(), SIGTERM);
  auto answer = stalled.get();
  p.Kill(SIGTERM);  // reaps it
  EXPECT_LT(Clock::now() - term, std::chrono::seconds(30)) << "shutdown completes";
  if (answer.status == 201) acknowledged.insert("stalled");

  WriteFile(delay, "0");
  p.Start();
  auto ids = StreamIds(p);
  std::set<std::string> stored(ids.begin(), ids.end());
  EXPECT_EQ(ids.size(), stored.size()) << "none twice";
  for (const auto& id : acknowledged) EXPECT_TRUE(stored.count(id)) << id << " was lost";
  EXPECT_LE(stored.size(), acknowledged.size() + 1) << "only the stalled append may be extra";
}

TEST(Fault, AClockJumpingBackwardsNeverMakesAnEntitysTimeDecrease) {
  SidecarProcess p;
  const std::string offset = p.dir() + "/clock-offset-us";
  WriteFile(offset, "0");
  p.SetEnv("SIDELOG_FAULT_CLOCK_FILE", offset);
  p.Start();
  // The time of an entity's last event.
  auto time_of = [&p](const std::string& entity) {
    auto r = RawRequest(p.port(), "GET", "/v1/streams/orders/entities/" + entity);
    return r.json()["updatedAt"].get<std::string>();
  };
  std::vector<std::string> times;
  for (int i = 0; i < 3; ++i) {
    auto r = Append(p, "order", Item("before-" + std::to_string(i)));
    ASSERT_EQ(r.status, 201) << r.body;
    times.push_back(time_of("order"));
  }

  // One hour back. A new entity's events take the new time at once (within 20 ms).
  WriteFile(offset, "-3600000000");
  std::string fresh_time;
  for (int i = 0; i < 100; ++i) {
    const std::string fresh = "fresh-" + std::to_string(i);
    ASSERT_EQ(Append(p, fresh, Item(fresh)).status, 201);
    fresh_time = time_of(fresh);
    if (fresh_time < times.front()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_LT(fresh_time, times.front()) << "the clock did not jump";

  for (int i = 0; i < 2; ++i) {
    auto r = Append(p, "order", Item("after-" + std::to_string(i)));
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_GE(time_of("order"), times.back()) << "an entity's time never decreases";
    times.push_back(time_of("order"));
  }
  auto events = RawRequest(p.port(), "GET", "/v1/streams/orders/entities/order/events").json();
  ASSERT_EQ(events["events"].size(), 5u);
  for (size_t i = 1; i < 5; ++i) {
    EXPECT_GE(events["events"][i]["time"], events["events"][i - 1]["time"]) << i;
  }
  // ?at= sees the history as it was written: at the second event's time, two items.
  auto at = RawRequest(p.port(), "GET", "/v1/streams/orders/entities/order?at=" + times[1]);
  ASSERT_EQ(at.status, 200) << at.body;
  EXPECT_EQ(at.json()["version"], 2) << at.body;
  EXPECT_EQ(at.json()["state"]["items"].size(), 2u) << at.body;
  auto now = RawRequest(p.port(), "GET", "/v1/streams/orders/entities/order?at=" + times.back());
  EXPECT_EQ(now.json()["version"], 5) << now.body;
}

}  // namespace
}  // namespace sidelog::testing
