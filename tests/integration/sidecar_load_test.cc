// Many concurrent clients, and SIGTERM under load: every acknowledged append is readable,
// versions have no gaps, nothing stalls, and a restart finds everything acknowledged.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "raw_http.h"
#include "sidecar_process.h"

namespace sidelog::testing {
namespace {

Json OneEvent(const std::string& id, int i) {
  return {{"events", Json::array({{{"id", id}, {"type", "ItemAdded"}, {"data", {{"item", i}}}}})}};
}

void ConcurrentClients(int clients) {
  SidecarProcess proc;
  proc.Start();
  constexpr int kPerClient = 40;
  std::vector<std::vector<std::pair<std::string, int64_t>>> acked(clients);
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(clients));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      cli::Client client(proc.url());
      for (int i = 0; i < kPerClient && std::chrono::steady_clock::now() < deadline; ++i) {
        // Clients share 8 entities, so appends to one entity race each other.
        std::string entity = "load-" + std::to_string(c % 8);
        std::string id = "c" + std::to_string(c) + "-" + std::to_string(i);
        auto r = client.Send("POST", "/v1/streams/orders/entities/" + entity + "/events",
                             OneEvent(id, i));
        ASSERT_EQ(r.status, 201) << r.body.dump();
        acked[c].push_back({id, r.body["version"].get<int64_t>()});
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the load stalled";

  std::set<std::string> expected;
  for (const auto& a : acked) {
    for (const auto& [id, v] : a) expected.insert(id);
  }
  EXPECT_EQ(expected.size(), static_cast<size_t>(clients * kPerClient));
  std::set<std::string> stored;
  cli::Client client(proc.url());
  for (int e = 0; e < 8; ++e) {
    int64_t want = 1;
    Json next = 1;
    while (!next.is_null()) {
      auto r = client.Send("GET", "/v1/streams/orders/entities/load-" + std::to_string(e) +
                                      "/events?limit=1000&fromVersion=" + next.dump());
      ASSERT_EQ(r.status, 200);
      for (const auto& ev : r.body["events"]) {
        EXPECT_EQ(ev["sidelogversion"].get<int64_t>(), want++);  // no gaps
        EXPECT_TRUE(stored.insert(ev["id"].get<std::string>()).second) << "duplicate";
      }
      next = r.body["next"];
    }
  }
  EXPECT_EQ(stored, expected);
}

TEST(SidecarLoad, ThirtyTwoConcurrentClients) { ConcurrentClients(32); }
TEST(SidecarLoad, SixtyFourConcurrentClients) { ConcurrentClients(64); }

TEST(SidecarLoad, SigtermDuringLoadKeepsEveryAcknowledgedAppend) {
  SidecarProcess proc;
  proc.Start();
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::set<std::string> acked;
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int c = 0; c < 8; ++c) {
    threads.emplace_back([&, c] {
      for (int i = 0; !stop; ++i) {
        std::string id = "t" + std::to_string(c) + "-" + std::to_string(i);
        auto r = RawRequest(proc.port(), "POST",
                            "/v1/streams/orders/entities/term-" + std::to_string(c) + "/events",
                            OneEvent(id, i).dump());
        if (r.status == 201) {
          std::lock_guard<std::mutex> lock(mu);
          acked.insert(id);
        } else if (r.status == 0) {
          return;  // the server is gone
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  int status = proc.Kill(SIGTERM);
  stop = true;
  for (auto& t : threads) t.join();
  ASSERT_TRUE(WIFEXITED(status)) << proc.Log();
  EXPECT_EQ(WEXITSTATUS(status), 0) << proc.Log();
  EXPECT_NE(proc.Log().find("\"msg\":\"stopped\""), std::string::npos);
  ASSERT_GT(acked.size(), 10u);

  proc.Start();
  std::set<std::string> stored;
  for (int c = 0; c < 8; ++c) {
    Json next = 1;
    while (!next.is_null()) {
      auto r = RawRequest(proc.port(), "GET",
                          "/v1/streams/orders/entities/term-" + std::to_string(c) +
                              "/events?limit=1000&fromVersion=" + next.dump());
      if (r.status == 404) break;
      ASSERT_EQ(r.status, 200) << r.body;
      const Json page = r.json();
      for (const auto& e : page["events"]) stored.insert(e["id"].get<std::string>());
      next = r.json()["next"];
    }
  }
  for (const auto& id : acked) EXPECT_TRUE(stored.count(id)) << "lost acknowledged " << id;
}

}  // namespace
}  // namespace sidelog::testing
