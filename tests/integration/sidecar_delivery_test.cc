// Push delivery from a standalone sidecar to a real app server (docs/subscriptions.md): at least
// once, in order per entity, parked events that can be replayed and discarded, positions that
// survive kill -9, an app that is not up yet.
#include <gtest/gtest.h>

#include <signal.h>

#include "command.h"
#include "raw_http.h"
#include "sidecar_process.h"
#include "test_app.h"

namespace sidelog::testing {
namespace {

std::string Streams(const std::string& deliver) {
  return "streams:\n  - name: orders\n    access: write\n    deliver: " + deliver +
         "\n  - name: audit\n    access: write\n";
}

void AppendOne(cli::Client& c, const std::string& entity, const Json& data,
               const std::string& type = "ItemAdded") {
  Json body = {{"events", Json::array({{{"type", type}, {"data", data}}})}};
  auto r = c.Send("POST", "/v1/streams/orders/entities/" + entity + "/events", body);
  ASSERT_EQ(r.status, 201) << r.body.dump();
}

// Runs the CLI against the sidecar; returns its exit code and output (stdout and stderr).
int Cli(const SidecarProcess& p, const std::string& args, std::string* out) {
  int code = 0;
  *out = RunCommand("SIDELOG_URL=" + p.url() + " " + SIDELOG_CLI_BIN + " " + args + " 2>&1", &code);
  return code;
}

Json Subscription(const SidecarProcess& p) {
  return cli::Client(p.url()).Send("GET", "/v1/subscriptions/orders").body;
}

std::string Metrics(const SidecarProcess& p) {
  return RawRequest(p.port(), "GET", "/metrics").body;
}

TEST(DeliveryTest, RandomFailuresAreRetriedUntilEachEventIsAcknowledgedOnceInEntityOrder) {
  TestApp app;
  app.set_fail_rate(0.3);
  app.Open();
  SidecarProcess p(Streams("{path: /events, maxInFlight: 8, retry: {initialBackoff: 1ms, "
                           "maxBackoff: 5ms, maxAttempts: 1000}}"),
                   "appPort: " + std::to_string(app.port()) + "\n");
  p.Start();
  cli::Client c(p.url());
  constexpr int kEntities = 20, kPerEntity = 20;
  for (int v = 0; v < kPerEntity; ++v) {
    for (int e = 0; e < kEntities; ++e) AppendOne(c, "o" + std::to_string(e), {{"item", v}});
  }
  // A stream without deliver: is not pushed.
  ASSERT_EQ(c.Send("POST", "/v1/streams/audit/entities/x/events",
                   Json{{"events", Json::array({{{"type", "Seen"}}})}})
                .status,
            201);
  ASSERT_TRUE(WaitFor([&] { return app.acked_distinct() == kEntities * kPerEntity; }))
      << app.acked_distinct() << "\n"
      << Subscription(p).dump(2);
  ASSERT_TRUE(WaitFor([&] { return Subscription(p)["state"] == "idle"; }))
      << Subscription(p).dump(2);
  for (const auto& [id, n] : app.acked())
    EXPECT_EQ(n, 1) << id << " acknowledged " << n << " times";
  EXPECT_TRUE(app.order_violations().empty()) << app.order_violations()[0];
  EXPECT_EQ(app.max_concurrent_per_entity(), 1);
  EXPECT_LE(app.max_concurrent(), 8);
  for (const auto& d : app.deliveries()) EXPECT_NE(d.entity, "x");
  Json s = Subscription(p);
  EXPECT_EQ(s["delivered"], kEntities * kPerEntity);
  EXPECT_GT(s["retried"].get<int>(), 50);
  EXPECT_EQ(s["parked"], 0);
  EXPECT_EQ(s["lag"]["events"], 0);
  EXPECT_EQ(s["position"], kEntities * kPerEntity);
  const std::string m = Metrics(p);
  EXPECT_EQ(MetricValue(m, "sidelog_delivery_delivered_total{subscription=\"orders\"}"),
            kEntities * kPerEntity);
  EXPECT_EQ(MetricValue(m, "sidelog_delivery_retries_total{subscription=\"orders\"}"),
            s["retried"].get<double>());
  EXPECT_EQ(MetricValue(m, "sidelog_delivery_lag_events{subscription=\"orders\"}"), 0);
  // Retries carry the attempt number; a first delivery says 1.
  int max_attempt = 0;
  for (const auto& d : app.deliveries()) max_attempt = std::max(max_attempt, d.attempt);
  EXPECT_GT(max_attempt, 1);
}

TEST(DeliveryTest, APoisonEventIsParkedTheEntityGoesOnAndAReplayDeliversIt) {
  TestApp app;
  std::atomic<bool> fixed{false};
  app.set_answer([&](const Delivery& d) {
    return !fixed && d.data.is_object() && d.data.contains("poison") ? 500 : 0;
  });
  app.Open();
  SidecarProcess p(
      Streams("{path: /events, retry: {initialBackoff: 1ms, maxBackoff: 2ms, maxAttempts: 3}}"),
      "appPort: " + std::to_string(app.port()) + "\n");
  p.Start();
  cli::Client c(p.url());
  app.allow_skip("a", 2);
  AppendOne(c, "a", {{"item", 1}});
  AppendOne(c, "a", {{"poison", true}});
  AppendOne(c, "a", {{"item", 3}});
  AppendOne(c, "b", {{"item", 1}});
  ASSERT_TRUE(WaitFor([&] { return app.acked_distinct() == 3; })) << Subscription(p).dump(2);
  ASSERT_TRUE(WaitFor([&] { return Subscription(p)["state"] == "idle"; }));
  EXPECT_TRUE(app.order_violations().empty());
  int poison_attempts = 0;
  for (const auto& d : app.deliveries()) poison_attempts += d.data.contains("poison");
  EXPECT_EQ(poison_attempts, 3);

  auto parked = c.Send("GET", "/v1/subscriptions/orders/parked");
  ASSERT_EQ(parked.status, 200);
  ASSERT_EQ(parked.body["parked"].size(), 1u) << parked.body.dump(2);
  const Json& pe = parked.body["parked"][0];
  EXPECT_EQ(pe["entity"], "a");
  EXPECT_EQ(pe["attempts"], 3);
  EXPECT_EQ(pe["position"], 2);
  EXPECT_NE(pe["lastError"].get<std::string>().find("500"), std::string::npos);
  EXPECT_EQ(pe["event"]["data"]["poison"], true);
  EXPECT_EQ(Subscription(p)["parked"], 1);
  EXPECT_EQ(MetricValue(Metrics(p), "sidelog_delivery_parked{subscription=\"orders\"}"), 1);

  // Replaying while the app still fails parks it again, with the new attempts.
  auto r = c.Send("POST", "/v1/subscriptions/orders/parked/replay");
  ASSERT_EQ(r.status, 202) << r.body.dump();
  EXPECT_EQ(r.body["replaying"], 1);
  ASSERT_TRUE(WaitFor([&] {
    int n = 0;
    for (const auto& d : app.deliveries()) n += d.data.contains("poison");
    return n == 6 && Subscription(p)["state"] == "idle";
  }));
  ASSERT_EQ(c.Send("GET", "/v1/subscriptions/orders/parked").body["parked"].size(), 1u);

  // Fixed: the replay delivers it and it leaves the parked list.
  fixed = true;
  r = c.Send("POST", "/v1/subscriptions/orders/parked/replay",
             Json{{"ids", Json::array({pe["id"]})}});
  ASSERT_EQ(r.status, 202) << r.body.dump();
  ASSERT_TRUE(WaitFor([&] { return app.acked_distinct() == 4; }));
  ASSERT_TRUE(WaitFor([&] { return Subscription(p)["parked"] == 0; })) << Subscription(p).dump(2);
  EXPECT_TRUE(c.Send("GET", "/v1/subscriptions/orders/parked").body["parked"].empty());

  // Unknown ids and names are clear 404s; bad ids 400.
  r = c.Send("POST", "/v1/subscriptions/orders/parked/replay", Json{{"ids", {999}}});
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body["detail"].get<std::string>().find("999"), std::string::npos);
  r = c.Send("POST", "/v1/subscriptions/orders/parked/replay", Json{{"ids", "all"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(c.Send("GET", "/v1/subscriptions/payments").status, 404);
  EXPECT_EQ(c.Send("DELETE", "/v1/subscriptions/orders/parked/abc").status, 400);
}

TEST(DeliveryTest, ADiscardedParkedEventIsGoneAndAFourHundredParksAtOnce) {
  TestApp app;
  app.set_answer([](const Delivery& d) { return d.data.contains("bad") ? 422 : 0; });
  app.Open();
  SidecarProcess p(Streams("{path: /events, cloudEvents: structured}"),
                   "appPort: " + std::to_string(app.port()) + "\n");
  p.Start();
  cli::Client c(p.url());
  AppendOne(c, "a", {{"bad", 1}});
  ASSERT_TRUE(WaitFor([&] { return Subscription(p)["parked"] == 1; })) << Subscription(p).dump(2);
  auto deliveries = app.deliveries();
  ASSERT_EQ(deliveries.size(), 1u);  // a 4xx is not retried
  EXPECT_EQ(deliveries[0].content_type.rfind("application/cloudevents+json", 0), 0u);
  EXPECT_EQ(deliveries[0].entity, "a");
  auto parked = c.Send("GET", "/v1/subscriptions/orders/parked").body["parked"];
  ASSERT_EQ(parked.size(), 1u);
  const std::string id = std::to_string(parked[0]["id"].get<int64_t>());
  EXPECT_EQ(parked[0]["attempts"], 1);
  EXPECT_NE(parked[0]["lastError"].get<std::string>().find("422"), std::string::npos);
  EXPECT_EQ(c.Send("DELETE", "/v1/subscriptions/orders/parked/" + id).status, 204);
  EXPECT_EQ(c.Send("DELETE", "/v1/subscriptions/orders/parked/" + id).status, 404);
  EXPECT_EQ(Subscription(p)["parked"], 0);
}

TEST(DeliveryTest, TheCliShowsSubscriptionsAndReplaysAndDiscardsParkedEvents) {
  TestApp app;
  std::atomic<bool> fixed{false};
  app.set_answer([&](const Delivery& d) { return !fixed && d.data.contains("bad") ? 400 : 0; });
  app.Open();
  SidecarProcess p(Streams("{path: /events}"), "appPort: " + std::to_string(app.port()) + "\n");
  p.Start();
  cli::Client c(p.url());
  AppendOne(c, "a", {{"bad", 1}});
  AppendOne(c, "b", {{"bad", 2}});
  AppendOne(c, "c", {{"item", 3}});
  ASSERT_TRUE(WaitFor([&] { return Subscription(p)["parked"] == 2 && app.acked_distinct() == 1; }));
  std::string out;
  ASSERT_EQ(Cli(p, "subscriptions", &out), 0) << out;
  EXPECT_NE(out.find("orders"), std::string::npos) << out;
  EXPECT_NE(out.find("PARKED"), std::string::npos) << out;
  EXPECT_NE(out.find("last error: the app answered 400"), std::string::npos) << out;
  ASSERT_EQ(Cli(p, "-o json subscriptions orders", &out), 0) << out;
  EXPECT_EQ(Json::parse(out)["parked"], 2);
  ASSERT_EQ(Cli(p, "parked orders", &out), 0) << out;
  EXPECT_NE(out.find("the app answered 400"), std::string::npos) << out;
  auto parked = c.Send("GET", "/v1/subscriptions/orders/parked").body["parked"];
  const std::string first = std::to_string(parked[0]["id"].get<int64_t>());
  const std::string second = std::to_string(parked[1]["id"].get<int64_t>());
  ASSERT_EQ(Cli(p, "discard orders " + first, &out), 0) << out;
  EXPECT_EQ(Cli(p, "discard orders " + first, &out), 1) << out;
  EXPECT_NE(out.find("404"), std::string::npos) << out;
  fixed = true;
  ASSERT_EQ(Cli(p, "replay orders --id " + second, &out), 0) << out;
  EXPECT_NE(out.find("replaying 1 parked events"), std::string::npos) << out;
  ASSERT_TRUE(WaitFor([&] { return app.acked_distinct() == 2 && Subscription(p)["parked"] == 0; }));
  EXPECT_EQ(Cli(p, "parked", &out), 2) << "parked needs NAME";
  EXPECT_EQ(Cli(p, "replay orders --id x", &out), 2) << out;
  EXPECT_EQ(Cli(p, "subscriptions nope", &out), 1) << out;
}

TEST(DeliveryTest, TheDaprStyleStatusBodyRetriesOrParks) {
  TestApp app;
  app.set_status_body(R"({"status":"RETRY"})");
  app.Open();
  SidecarProcess p(
      Streams("{path: /events, retry: {initialBackoff: 1ms, maxBackoff: 1ms, maxAttempts: 2}}"),
      "appPort: " + std::to_string(app.port()) + "\n");
  p.Start();
  cli::Client c(p.url());
  AppendOne(c, "a", {{"item", 1}});
  ASSERT_TRUE(WaitFor([&] { return Subscription(p)["parked"] == 1; }));
  EXPECT_EQ(app.deliveries().size(), 2u);  // RETRY, up to maxAttempts
  app.set_status_body(R"({"status":"DROP"})");
  AppendOne(c, "b", {{"item", 1}});
  ASSERT_TRUE(WaitFor([&] { return Subscription(p)["parked"] == 2; }));
  EXPECT_EQ(app.deliveries().size(), 3u);  // DROP parks at once
  app.set_status_body(R"({"status":"SUCCESS"})");
  AppendOne(c, "c", {{"item", 1}});
  ASSERT_TRUE(WaitFor([&] { return Subscription(p)["delivered"] == 1; }));
  EXPECT_EQ(Subscription(p)["parked"], 2);
}

TEST(DeliveryTest, AnAppThatIsNotUpIsWaitedForWithoutSpendingAttempts) {
  TestApp app;  // not listening yet
  SidecarProcess p(
      Streams("{path: /events, retry: {initialBackoff: 5ms, maxBackoff: 100ms, maxAttempts: 2}}"),
      "appPort: " + std::to_string(app.port()) + "\n");
  p.Start();
  cli::Client c(p.url());
  for (int i = 0; i < 5; ++i) AppendOne(c, "e" + std::to_string(i), {{"item", i}});
  ASSERT_TRUE(WaitFor([&] { return Subscription(p)["state"] == "waitingForApp"; }))
      << Subscription(p).dump(2);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // long enough to park, if wrong
  Json s = Subscription(p);
  EXPECT_EQ(s["app"]["up"], false);
  EXPECT_EQ(s["parked"], 0);
  EXPECT_EQ(s["retried"], 0);
  EXPECT_NE(s["detail"].get<std::string>().find("cannot connect"), std::string::npos) << s.dump();
  EXPECT_EQ(MetricValue(Metrics(p), "sidelog_delivery_app_up{subscription=\"orders\"}"), 0);
  app.Open();
  ASSERT_TRUE(WaitFor([&] { return app.acked_distinct() == 5; })) << Subscription(p).dump(2);
  for (const auto& d : app.deliveries()) EXPECT_EQ(d.attempt, 1);
  ASSERT_TRUE(WaitFor([&] { return Subscription(p)["app"]["up"] == true; }));
  EXPECT_EQ(Subscription(p)["parked"], 0);
}

TEST(DeliveryTest, KillNineMidDeliveryResumesFromTheRecordedPositionWithNothingLost) {
  TestApp app;
  app.set_delay(std::chrono::milliseconds(20));  // about 200 events/s: the kill comes mid-way
  app.Open();
  SidecarProcess p(Streams("{path: /events, maxInFlight: 4}"),
                   "appPort: " + std::to_string(app.port()) + "\n");
  p.Start();
  cli::Client c(p.url());
  constexpr int kEvents = 400;
  for (int i = 0; i < kEvents; ++i) AppendOne(c, "o" + std::to_string(i % 10), {{"item", i}});
  ASSERT_TRUE(WaitFor([&] { return app.acked_distinct() >= kEvents / 2; }));
  p.Kill(SIGKILL);
  const size_t before = app.acked_distinct();
  ASSERT_LT(before, static_cast<size_t>(kEvents)) << "delivery finished before the kill";
  p.Start();
  ASSERT_TRUE(WaitFor([&] { return app.acked_distinct() == kEvents; }))
      << app.acked_distinct() << "\n"
      << Subscription(p).dump(2);
  int duplicates = 0;
  for (const auto& [id, n] : app.acked()) duplicates += n - 1;
  // Only what was in flight at the kill can come again: at most maxInFlight events.
  EXPECT_LE(duplicates, 4) << duplicates << " events were acknowledged twice";
  EXPECT_TRUE(app.order_violations().empty()) << app.order_violations()[0];
  ASSERT_TRUE(WaitFor([&] { return Subscription(p)["position"] == kEvents; }));
  std::cout << "acknowledged before the kill: " << before << ", duplicates after it: " << duplicates
            << "\n";
}

TEST(DeliveryTest, OrderingNoneDeliversEntitiesEventsConcurrently) {
  TestApp app;
  app.set_delay(std::chrono::milliseconds(20));
  app.Open();
  SidecarProcess p(Streams("{path: /events, ordering: none, maxInFlight: 8}"),
                   "appPort: " + std::to_string(app.port()) + "\n");
  p.Start();
  cli::Client c(p.url());
  for (int i = 0; i < 40; ++i) AppendOne(c, "one", {{"item", i}});
  ASSERT_TRUE(WaitFor([&] { return app.acked_distinct() == 40; }));
  EXPECT_GT(app.max_concurrent_per_entity(), 1);
  EXPECT_EQ(Subscription(p)["ordering"], "none");
}

TEST(DeliveryTest, ADeliveryWithoutAPortStopsTheSidecarWithAClearError) {
  SidecarProcess p(Streams("{path: /events}"));
  const std::string config = p.dir() + "/sidecar.yaml";
  pid_t pid = fork();
  if (pid == 0) {
    freopen((p.dir() + "/out.log").c_str(), "w", stderr);
    execl(SIDELOG_SIDECAR_BIN, "sidelog-sidecar", "--config", config.c_str(), nullptr);
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  std::ifstream in(p.dir() + "/out.log");
  std::string out((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(out.find("stream orders has a deliver: section but no port"), std::string::npos) << out;
  // SIDELOG_APP_PORT gives it one.
  TestApp app;
  app.Open();
  p.SetEnv("SIDELOG_APP_PORT", std::to_string(app.port()));
  p.Start();
  cli::Client c(p.url());
  AppendOne(c, "a", {{"item", 1}});
  ASSERT_TRUE(WaitFor([&] { return app.acked_distinct() == 1; }));
  EXPECT_EQ(Subscription(p)["port"], app.port());
}

}  // namespace
}  // namespace sidelog::testing
