// Replication through a real nats-server with JetStream: replicas of one service and a reading
// service converge on identical logs, conflicts and retries behave as DESIGN.md says, and NATS
// or sidecar failures lose nothing that was acknowledged.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "replication_util.h"

namespace sidelog::testing {
namespace {

TEST(Replication, TwoReplicasAppendingConcurrentlyConverge) {
  OrdersReplicas replicas;
  NatsServer& nats = replicas.nats;
  SidecarProcess& a = replicas.a;
  SidecarProcess& b = replicas.b;
  std::atomic<int> acked{0};
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      const SidecarProcess& p = t % 2 ? a : b;
      for (int i = 0; i < 25; ++i) {
        auto r = Append(p, "shared-" + std::to_string(i % 4),
                        Events("t" + std::to_string(t) + "-" + std::to_string(i), i));
        ASSERT_EQ(r.status, 201) << r.body;
        acked++;
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(acked.load(), 200);
  int64_t last = JetStreamLastSeq(nats);
  ASSERT_EQ(last, 200);  // one JetStream message per commit, no duplicates
  auto da = Dump(a, last);
  auto db = Dump(b, last);
  EXPECT_EQ(da.size(), 200u);
  EXPECT_TRUE(da == db) << DumpDifference(da, db);
  // Versions per entity are gap-free: exactly one commit per version.
  int64_t total = 0;
  for (int e = 0; e < 4; ++e) {
    auto r =
        RawRequest(a.port(), "GET",
                   "/v1/streams/orders/entities/shared-" + std::to_string(e) + "/events?limit=1000")
            .json();
    int64_t want = 1;
    for (const auto& ev : r["events"]) EXPECT_EQ(ev["sidelogversion"].get<int64_t>(), want++);
    total += want - 1;
  }
  EXPECT_EQ(total, 200);
}

TEST(Replication, ConflictsAcrossReplicasAnswer409AndRetriesReplay) {
  OrdersReplicas replicas;
  NatsServer& nats = replicas.nats;
  SidecarProcess& a = replicas.a;
  SidecarProcess& b = replicas.b;
  Json first = Events("e-1", 1);
  first["expectedVersion"] = "none";
  auto created = Append(a, "o1", first);
  ASSERT_EQ(created.status, 201) << created.body;
  // B has not necessarily seen it: its publish is conditional anyway.
  Json second = Events("e-2", 2);
  second["expectedVersion"] = "none";
  auto conflict = Append(b, "o1", second);
  EXPECT_EQ(conflict.status, 409) << conflict.body;
  EXPECT_EQ(conflict.json()["currentVersion"], 1);
  // The same commit retried through the other replica is a replay with the original result.
  auto replay = Append(b, "o1", first);
  EXPECT_EQ(replay.status, 200) << replay.body;
  EXPECT_EQ(replay.json()["position"], created.json()["position"]);
  // "any" on a stale replica catches up and retries by itself.
  auto any = Append(b, "o1", Events("e-3", 3));
  EXPECT_EQ(any.status, 201) << any.body;
  EXPECT_EQ(any.json()["version"], 2);
  // Read-your-writes across replicas with minPosition.
  auto read =
      RawRequest(a.port(), "GET",
                 "/v1/streams/orders/entities/o1?minPosition=" + any.json()["position"].dump());
  EXPECT_EQ(read.status, 200);
  EXPECT_EQ(read.json()["version"], 2);
  EXPECT_EQ(JetStreamLastSeq(nats), 2);
}

// Ids the sidecar generates for a commit are stored as one run, on the replica that wrote it
// and on the one that follows it: a retry with those ids through either replica replays,
// a part of them conflicts, and reads on both give every id back.
TEST(Replication, GeneratedIdsReplayThroughEitherReplica) {
  OrdersReplicas replicas;
  NatsServer& nats = replicas.nats;
  SidecarProcess& a = replicas.a;
  SidecarProcess& b = replicas.b;
  Json body = {{"events", Json::array()}};
  for (int i = 0; i < 4; ++i) body["events"].push_back({{"type", "Bumped"}, {"data", {{"i", i}}}});
  auto created = Append(a, "gen", body);
  ASSERT_EQ(created.status, 201) << created.body;
  const Json ids = created.json()["events"];
  ASSERT_EQ(ids.size(), 4u);
  Json retry = body;
  for (size_t i = 0; i < 4; ++i) retry["events"][i]["id"] = ids[i]["id"];

  const std::string position = created.json()["position"].dump();
  ASSERT_EQ(
      RawRequest(b.port(), "GET", "/v1/streams/orders/entities/gen?minPosition=" + position).status,
      200);
  auto seen = RawRequest(b.port(), "GET", "/v1/streams/orders/entities/gen/events");
  ASSERT_EQ(seen.status, 200) << seen.body;
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(seen.json()["events"][i]["id"], ids[i]["id"]);

  for (SidecarProcess* p : {&a, &b}) {
    auto replay = Append(*p, "gen", retry);
    EXPECT_EQ(replay.status, 200) << replay.body;
    EXPECT_EQ(replay.json()["position"], created.json()["position"]) << replay.body;
    Json part = retry;
    part["events"].erase(part["events"].begin());
    EXPECT_EQ(Append(*p, "gen", part).status, 409);
  }
  EXPECT_EQ(JetStreamLastSeq(nats), 1);
}

TEST(Replication, AReadingServiceFollowsInOrderAndCannotWrite) {
  NatsServer nats;
  nats.Start();
  SidecarProcess writer(kOrders, nats.SidecarConfig(), "orders");
  writer.Start();
  SidecarProcess reader(kOrdersRead, nats.SidecarConfig(), "billing");
  reader.Start();
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(
        Append(writer, "o" + std::to_string(i % 3), Events("w" + std::to_string(i), i)).status,
        201);
  }
  EXPECT_EQ(Dump(reader, 30), Dump(writer, 30));
  auto forbidden = Append(reader, "o1", Events("r1", 1));
  EXPECT_EQ(forbidden.status, 403);
  auto strong =
      RawRequest(reader.port(), "GET", "/v1/streams/orders/entities/o1?consistency=strong");
  EXPECT_EQ(strong.status, 200) << strong.body;
  EXPECT_EQ(strong.json()["version"], 10);
}

TEST(Replication, NatsDownRefusesWritesServesReadsAndRecovers) {
  NatsServer nats;
  nats.Start();
  SidecarProcess a(kOrders, nats.SidecarConfig(), "orders");
  a.Start();
  ASSERT_EQ(Append(a, "o1", Events("before", 1)).status, 201);
  nats.Kill(SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto refused = Append(a, "o1", Events("during", 2));
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_FALSE(refused.header("retry-after").empty());
  EXPECT_EQ(RawRequest(a.port(), "GET", "/v1/streams/orders/entities/o1").status, 200);
  EXPECT_EQ(RawRequest(a.health_port(), "GET", "/readyz").status, 200);  // NATS is not readiness
  EXPECT_EQ(RawRequest(a.port(), "GET", "/v1/status").json()["nats"]["state"], "disconnected");
  nats.Start();  // same store: the stream and its commit are still there
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  RawResponse after;
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    after = Append(a, "o1", Events("after", 3));
  } while (after.status == 503 && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(after.status, 201) << after.body;
  EXPECT_EQ(after.json()["version"], 2);
}

TEST(Replication, ASidecarKilledMidLoadCatchesUpWithoutGaps) {
  OrdersReplicas replicas;
  NatsServer& nats = replicas.nats;
  SidecarProcess& a = replicas.a;
  SidecarProcess& b = replicas.b;
  std::atomic<bool> stop{false};
  std::atomic<int> acked{0};
  std::thread load([&] {
    for (int i = 0; !stop && i < 400; ++i) {
      if (Append(a, "k" + std::to_string(i % 5), Events("k" + std::to_string(i), i)).status == 201)
        acked++;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  b.Kill(SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  b.Start();
  stop = true;
  load.join();
  int64_t last = JetStreamLastSeq(nats);
  EXPECT_EQ(last, acked.load());
  EXPECT_EQ(Dump(b, last), Dump(a, last));
}

TEST(Replication, AStreamRecreatedUnderTheSidecarRefusesWrites) {
  NatsServer nats;
  nats.Start();
  SidecarProcess a(kOrders, nats.SidecarConfig(/*create_streams=*/true), "orders");
  a.Start();
  ASSERT_EQ(Append(a, "o1", Events("x1", 1)).status, 201);
  ASSERT_EQ(Append(a, "o1", Events("x2", 2)).status, 201);
  {
    NatsConfig c;
    c.url = nats.url();
    auto js = JetStream::Connect(c, nullptr);
    ASSERT_TRUE(js.ok());
    ASSERT_TRUE((*js)->DeleteStream("SIDELOG_it_orders").ok());
    // With createStreams (dev mode) the sidecar may recreate it first: either way the stream
    // is a new one under the sidecar.
    auto created = (*js)->CreateStream("SIDELOG_it_orders", "sidelog.it.orders.>");
    if (!created.ok()) {
      ASSERT_TRUE((*js)->Info("SIDELOG_it_orders").ok()) << created.message();
    }
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  RawResponse r;
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    r = Append(a, "o2", Events("y1", 1));
  } while (r.status != 503 && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(r.json()["reason"], "StreamReset");
  EXPECT_EQ(RawRequest(a.port(), "GET", "/v1/streams/orders/entities/o1").status, 200);
  EXPECT_EQ(RawRequest(a.port(), "GET", "/v1/status").json()["streams"][0]["state"], "reset");
}

}  // namespace
}  // namespace sidelog::testing
