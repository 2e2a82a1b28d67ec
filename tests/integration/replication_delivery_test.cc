// Push delivery in replicated mode, through a real nats-server: `group: service` splits the
// events between a service's pods through one JetStream durable consumer, in order per entity;
// `group: pod` gives every pod every event; kill -9 of a pod or of nats-server loses nothing.
#include <gtest/gtest.h>

#include <signal.h>

#include <atomic>
#include <thread>

#include "replication_util.h"
#include "test_app.h"

namespace sidelog::testing {
namespace {

std::string Orders(const std::string& deliver) {
  return "streams:\n  - name: orders\n    access: write\n    deliver: " + deliver + "\n";
}

Json Sub(const SidecarProcess& p) {
  return RawRequest(p.port(), "GET", "/v1/subscriptions/orders").json();
}

void AppendMany(const SidecarProcess& p, int entities, int per_entity) {
  for (int v = 0; v < per_entity; ++v) {
    for (int e = 0; e < entities; ++e) {
      auto r = Append(p, "o" + std::to_string(e),
                      Events("e" + std::to_string(e) + "-" + std::to_string(v), v));
      ASSERT_EQ(r.status, 201) << r.body;
    }
  }
}

// Two pods of one service, each with its own app; one ledger would double-count nothing, so
// the test adds their books up.
struct TwoPods {
  explicit TwoPods(const std::string& deliver) {
    nats.Start();
    app_a.Open();
    app_b.Open();
    a = std::make_unique<SidecarProcess>(
        Orders(deliver), nats.SidecarConfig() + "appPort: " + std::to_string(app_a.port()) + "\n",
        "billing");
    b = std::make_unique<SidecarProcess>(
        Orders(deliver), nats.SidecarConfig() + "appPort: " + std::to_string(app_b.port()) + "\n",
        "billing");
    a->Start();
    b->Start();
  }
  std::map<std::string, int> Acked() const {
    auto all = app_a.acked();
    for (const auto& [id, n] : app_b.acked()) all[id] += n;
    return all;
  }
  NatsServer nats;
  TestApp app_a, app_b;
  std::unique_ptr<SidecarProcess> a, b;
};

// Every delivery of one entity, from either pod, in the order the apps answered them, must
// follow its versions: checked on the merged deliveries by answer time is not possible across
// two apps, so each app checks against a shared ledger instead.
TEST(ReplicatedDelivery, GroupServiceSplitsTheEventsBetweenPodsInEntityOrder) {
  TwoPods pods("{path: /events, maxInFlight: 4}");
  // One ledger for both apps: a pod delivering v2 before the other pod's v1 was acknowledged
  // shows up as a violation.
  auto ledger = std::make_shared<std::mutex>();
  std::map<std::string, int64_t> acked_version;
  std::vector<std::string> violations;
  auto check = [&](const Delivery& d) {
    std::lock_guard<std::mutex> lock(*ledger);
    auto& last = acked_version[d.entity];
    if (d.version > last + 1) {
      violations.push_back(d.entity + " v" + std::to_string(d.version) + " after v" +
                           std::to_string(last));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    last = std::max(last, d.version);
    return 204;
  };
  pods.app_a.set_answer(check);
  pods.app_b.set_answer(check);
  constexpr int kEntities = 10, kPer = 20;
  AppendMany(*pods.a, kEntities, kPer);
  ASSERT_TRUE(WaitFor([&] { return pods.Acked().size() == kEntities * kPer; }))
      << pods.Acked().size() << "\n"
      << Sub(*pods.a).dump(2) << "\n"
      << Sub(*pods.b).dump(2);
  ASSERT_TRUE(WaitFor([&] {
    return Sub(*pods.a)["consumer"]["ackFloor"] == kEntities * kPer &&
           Sub(*pods.b)["consumer"]["ackFloor"] == kEntities * kPer;
  })) << Sub(*pods.a).dump(2);
  int duplicates = 0;
  for (const auto& [id, n] : pods.Acked()) duplicates += n - 1;
  EXPECT_EQ(duplicates, 0);
  EXPECT_TRUE(violations.empty()) << violations[0];
  const int da = Sub(*pods.a)["delivered"], db = Sub(*pods.b)["delivered"];
  EXPECT_EQ(da + db, kEntities * kPer);
  EXPECT_GT(da, 0) << "pod a delivered nothing";
  EXPECT_GT(db, 0) << "pod b delivered nothing";
  EXPECT_EQ(Sub(*pods.a)["consumer"]["name"], "sidelog-it-billing-orders");
  std::cout << "pod a delivered " << da << ", pod b " << db << "\n";
}

TEST(ReplicatedDelivery, GroupPodGivesEveryPodEveryEvent) {
  TwoPods pods("{path: /events, group: pod}");
  AppendMany(*pods.a, 5, 10);
  ASSERT_TRUE(WaitFor([&] {
    return pods.app_a.acked_distinct() == 50 && pods.app_b.acked_distinct() == 50;
  })) << Sub(*pods.a).dump(2)
      << "\n"
      << Sub(*pods.b).dump(2);
  EXPECT_TRUE(pods.app_a.order_violations().empty());
  EXPECT_TRUE(pods.app_b.order_violations().empty());
  EXPECT_EQ(Sub(*pods.a)["group"], "pod");
  EXPECT_FALSE(Sub(*pods.a).contains("consumer"));
}

TEST(ReplicatedDelivery, RandomFailuresAndAPodKilledMidDeliveryLoseNothing) {
  TwoPods pods(
      "{path: /events, maxInFlight: 4, retry: {initialBackoff: 1ms, maxBackoff: 5ms, "
      "maxAttempts: 1000}}");
  pods.app_a.set_fail_rate(0.3);
  pods.app_b.set_fail_rate(0.3);
  // Pod a's app is the slower one, so that pod a still holds commits when it is killed.
  pods.app_a.set_delay(std::chrono::milliseconds(30));
  pods.app_b.set_delay(std::chrono::milliseconds(5));
  constexpr int kEntities = 8, kPer = 25;
  AppendMany(*pods.b, kEntities, kPer);
  ASSERT_TRUE(WaitFor([&] { return pods.Acked().size() >= kEntities * kPer / 4; }));
  pods.a->Kill(SIGKILL);
  ASSERT_LT(pods.Acked().size(), static_cast<size_t>(kEntities * kPer));
  // Pod b takes over what pod a held once JetStream's ack wait (10 s) passes.
  ASSERT_TRUE(
      WaitFor([&] { return pods.Acked().size() == kEntities * kPer; }, std::chrono::seconds(60)))
      << pods.Acked().size() << "\n"
      << Sub(*pods.b).dump(2);
  int duplicates = 0;
  for (const auto& [id, n] : pods.Acked()) duplicates += n - 1;
  EXPECT_LE(duplicates, 4) << "only what pod a had in flight may come twice";
  // Every entity's versions were acknowledged, each at least once.
  std::map<std::string, std::set<int64_t>> versions;
  for (const auto* app : {&pods.app_a, &pods.app_b}) {
    for (const auto& d : app->deliveries()) {
      if (d.answered == 204) versions[d.entity].insert(d.version);
    }
  }
  for (const auto& [entity, v] : versions) EXPECT_EQ(v.size(), static_cast<size_t>(kPer)) << entity;
  std::cout << "duplicates after the kill: " << duplicates << "\n";
}

TEST(ReplicatedDelivery, NatsKilledMidDeliveryResumesFromTheDurablePosition) {
  NatsServer nats;
  nats.Start();
  TestApp app;
  app.set_delay(std::chrono::milliseconds(10));
  app.Open();
  SidecarProcess p(Orders("{path: /events, maxInFlight: 2}"),
                   nats.SidecarConfig() + "appPort: " + std::to_string(app.port()) + "\n",
                   "billing");
  p.Start();
  for (int i = 0; i < 100; ++i) {
    auto r = Append(p, "o" + std::to_string(i % 5), Events("n" + std::to_string(i), i));
    ASSERT_EQ(r.status, 201) << r.body;
  }
  ASSERT_TRUE(WaitFor([&] { return app.acked_distinct() >= 20; }));
  nats.Kill(SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  nats.Start();
  ASSERT_TRUE(WaitFor([&] { return app.acked_distinct() == 100; }, std::chrono::seconds(60)))
      << app.acked_distinct() << "\n"
      << Sub(p).dump(2);
  int duplicates = 0;
  for (const auto& [id, n] : app.acked()) duplicates += n - 1;
  EXPECT_TRUE(app.order_violations().empty()) << app.order_violations()[0];
  std::cout << "duplicates after the NATS restart: " << duplicates << "\n";
  ASSERT_TRUE(
      WaitFor([&] { return Sub(p)["consumer"]["ackFloor"] == 100; }, std::chrono::seconds(30)))
      << Sub(p).dump(2);
}

TEST(ReplicatedDelivery, AThreeNodeClusterLosingANodeMidDeliveryLosesNothing) {
  NatsCluster cluster;
  cluster.Start();
  {
    NatsConfig c;
    c.url = cluster.urls();
    auto js = JetStream::Connect(c, nullptr);
    ASSERT_TRUE(js.ok()) << js.status().message();
    JetStreamConfig config;
    config.name = "SIDELOG_it_orders";
    config.subjects = {"sidelog.it.orders.>"};
    config.replicas = 3;  // the durable consumer gets three replicas too
    Status created = Status::Unavailable("not tried");
    for (int i = 0; i < 50 && !created.ok(); ++i) {
      created = (*js)->CreateStream(config);
      if (!created.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ASSERT_TRUE(created.ok()) << created.message();
  }
  TestApp app_a, app_b;
  app_a.set_delay(std::chrono::milliseconds(5));
  app_b.set_delay(std::chrono::milliseconds(5));
  app_a.Open();
  app_b.Open();
  auto section = [&](int first, int port) {
    return "nats: {url: \"" + cluster.urls(first) +
           "\", createStreams: false}\nappPort: " + std::to_string(port) + "\n";
  };
  SidecarProcess a(Orders("{path: /events, maxInFlight: 4}"), section(0, app_a.port()), "billing");
  SidecarProcess b(Orders("{path: /events, maxInFlight: 4}"), section(1, app_b.port()), "billing");
  a.Start(std::chrono::seconds(30));
  b.Start(std::chrono::seconds(30));
  constexpr int kEvents = 150;
  for (int i = 0; i < kEvents; ++i) {
    auto r = Append(b, "o" + std::to_string(i % 10), Events("c" + std::to_string(i), i));
    ASSERT_EQ(r.status, 201) << r.body;
  }
  auto acked = [&] {
    auto all = app_a.acked();
    for (const auto& [id, n] : app_b.acked()) all[id] += n;
    return all;
  };
  ASSERT_TRUE(WaitFor([&] { return acked().size() >= kEvents / 4; }));
  cluster.node(0).Kill(SIGKILL);  // a's server, and maybe the consumer's leader
  ASSERT_TRUE(WaitFor([&] { return acked().size() == kEvents; }, std::chrono::seconds(90)))
      << acked().size() << "\n"
      << Sub(a).dump(2) << "\n"
      << Sub(b).dump(2);
  int duplicates = 0;
  for (const auto& [id, n] : acked()) duplicates += n - 1;
  std::cout << "delivered by a " << Sub(a)["delivered"] << ", by b " << Sub(b)["delivered"]
            << ", duplicates " << duplicates << "\n"
            << Sub(b)["consumer"].dump() << "\n";
}

}  // namespace
}  // namespace sidelog::testing
