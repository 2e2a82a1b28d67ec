// Linearizability of one entity's appends (with expected versions) and strong reads across the
// replicas of a stream, with faults injected while clients run: concurrent clients record what
// they asked, when, and what they were told; the history goes to a real checker (Porcupine,
// tests/tools/lincheck), which fails the test and prints the smallest bad history it finds.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "command.h"
#include "replication_util.h"

namespace sidelog::testing {
namespace {

using Clock = std::chrono::steady_clock;

struct History {
  std::mutex mu;
  std::vector<Json> ops;
  std::map<std::string, int> statuses;  // "append 201", "read 503", ... for the failure message
  const Clock::time_point start = Clock::now();

  int64_t Now() const {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  }
  void Add(Json op) {
    std::lock_guard<std::mutex> lock(mu);
    ops.push_back(std::move(op));
  }
  void Count(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    ++statuses[what];
  }
};

// One client: appends with the version it last saw (sometimes "any", sometimes one off) and
// strong reads, on random entities through random replicas, until `stop`.
void Client(int id, std::vector<SidecarProcess*> replicas, History* history,
            const std::atomic<bool>* stop) {
  std::mt19937 rng(static_cast<unsigned>(id) * 7919u + 1);
  std::map<std::string, int64_t> seen;
  for (int n = 0; n < 400 && !stop->load(); ++n) {
    const std::string entity = "e" + std::to_string(rng() % 3);
    const SidecarProcess& replica = *replicas[rng() % replicas.size()];
    Json op = {{"client", id}, {"entity", entity}};
    if (rng() % 10 < 6) {
      int64_t expected = seen[entity];
      if (rng() % 8 == 0) expected = -1;
      if (rng() % 8 == 1) expected = std::max<int64_t>(0, expected - 1);
      Json body = {
          {"events", Json::array({{{"id", "c" + std::to_string(id) + "-" + std::to_string(n)},
                                   {"type", "Bumped"},
                                   {"data", {{"client", id}}}}})}};
      if (expected >= 0) body["expectedVersion"] = expected;
      op["kind"] = "append";
      op["expected"] = expected;
      op["call"] = history->Now();
      auto r = RawRequest(replica.port(), "POST",
                          "/v1/streams/orders/entities/" + entity + "/events", body.dump());
      op["return"] = history->Now();
      history->Count("append " + std::to_string(r.status));
      Json j = r.json();
      if (r.status == 201) {
        op["result"] = "ok";
        op["version"] = j["version"];
        seen[entity] = j["version"];
      } else if (r.status == 409) {
        op["result"] = "conflict";
        if (j["currentVersion"].is_number()) seen[entity] = j["currentVersion"];
      } else if ((r.status == 0 && r.connected) ||
                 (r.status == 503 && j["outcomeUnknown"] == true)) {
        op["result"] = "unknown";  // no answer, or the broker did not say: maybe stored
      } else if (r.status == 503 || r.status == 0) {
        continue;  // refused before anything was sent, or not connected: not an operation
      } else {
        ADD_FAILURE() << "append answered " << r.status << ": " << r.body;
        continue;
      }
    } else {
      op["kind"] = "read";
      op["call"] = history->Now();
      auto r = RawRequest(replica.port(), "GET",
                          "/v1/streams/orders/entities/" + entity + "?consistency=strong");
      op["return"] = history->Now();
      history->Count("read " + std::to_string(r.status));
      if (r.status == 200) {
        op["version"] = r.json()["version"];
        seen[entity] = std::max(seen[entity], r.json()["version"].get<int64_t>());
      } else if (r.status == 404) {
        op["version"] = 0;
      } else {
        continue;  // 503 (cannot catch up) or no answer: a read that said nothing
      }
      op["result"] = "ok";
    }
    history->Add(std::move(op));
  }
}

TEST(Replication, AppendsAndStrongReadsAreLinearizablePerEntityAcrossReplicasUnderFaults) {
  NatsServer nats;
  nats.Start();
  const std::string config =
      "nats: {url: \"" + nats.url() + "\", createStreams: true, publishTimeout: 1s}\n";
  SidecarProcess a(kOrders, config, "orders"), b(kOrders, config, "orders"),
      c(kOrders, config, "orders");
  a.Start();
  b.Start();
  c.Start();

  History history;
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  clients.reserve(6);
  for (int i = 0; i < 6; ++i)
    clients.emplace_back(Client, i, std::vector{&a, &b, &c}, &history, &stop);

  auto appended = [&history] {
    std::lock_guard<std::mutex> lock(history.mu);
    return history.statuses["append 201"];
  };
  auto wait_for_appends = [&](int n) {
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (appended() < n && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  };
  // Faults, each once the clients have made progress: a replica killed and restarted, then
  // the broker frozen for longer than the publish timeout.
  wait_for_appends(40);
  b.Kill(SIGKILL);
  wait_for_appends(80);
  b.Start();
  wait_for_appends(120);
  nats.Signal(SIGSTOP);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the fault's length
  nats.Signal(SIGCONT);
  wait_for_appends(200);
  stop = true;
  for (auto& t : clients) t.join();

  std::string summary;
  for (const auto& [what, n] : history.statuses) summary += what + ": " + std::to_string(n) + "  ";
  ASSERT_GE(appended(), 100) << "too few appends to say anything: " << summary;

  // Kept when the check fails, for lincheck or a second look.
  const std::string path = "/tmp/sidelog-history-" + std::to_string(getpid()) + ".jsonl";
  {
    std::ofstream out(path);
    for (const auto& op : history.ops) out << op.dump() << "\n";
  }
  int code = 0;
  std::string verdict = RunCommand(std::string(SIDELOG_LINCHECK_BIN) + " < " + path, &code);
  EXPECT_EQ(code, 0) << verdict << "\n" << summary << "\nhistory: " << path;
  std::printf("%s%s\n", verdict.c_str(), summary.c_str());
  if (code == 0) std::remove(path.c_str());
}

}  // namespace
}  // namespace sidelog::testing
