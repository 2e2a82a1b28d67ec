// The EventService reconciler against FakeKubeApi, run by a Manager as in the operator: the
// shop's dependencies, missing streams, Single-producer conflicts, cycles under each policy,
// re-rendering when a stream's rules change, and the rendered config as the sidecar reads it.
#include <gtest/gtest.h>

#include "eventservice_reconciler.h"
#include "eventstream_reconciler.h"
#include "fake_kube_api.h"
#include "manager.h"
#include "operator_test_util.h"
#include "shop_objects.h"
#include "sidecar_injector.h"
#include "sidelog/config.h"
#include "sidelog/yaml.h"

namespace sidelog::op {
namespace {

using testing::At;
using testing::ConditionOf;
using testing::Object;
using testing::ShopObjects;
using testing::WaitFor;

class EventServiceTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (manager_) manager_->Stop();
  }

  void Start(CyclePolicy cycles = CyclePolicy::kWarn) {
    manager_ = std::make_unique<Manager>(&api_, "", &metrics_);
    recorder_ = std::make_unique<EventRecorder>(manager_->client(), "sidelog-operator", "test");
    EventServiceOptions o;
    o.cycles = cycles;
    o.sidecar.nats.url = "nats://nats.sidelog-system:4222";
    reconciler_ = std::make_unique<EventServiceReconciler>(
        manager_->client(), manager_->InformerFor(kEventServices),
        manager_->InformerFor(kEventStreams), manager_->InformerFor(kConfigMaps),
        manager_->InformerFor(kPods, InjectedPodSelector()), recorder_.get(), o);
    ControllerOptions c;
    c.resync_period = std::chrono::hours(1);
    reconciler_->WatchDependencies(manager_->AddController(kEventServices, reconciler_.get(), c));
    manager_->Start();
    ASSERT_TRUE(manager_->WaitUntilReady(std::chrono::seconds(5)));
  }

  void CreateShop() {
    for (const auto& s : ShopObjects("EventStream"))
      ASSERT_TRUE(api_.Create(kEventStreams, "shop", s).ok());
    for (const auto& s : ShopObjects("EventService"))
      ASSERT_TRUE(api_.Create(kEventServices, "shop", s).ok());
  }

  Json Service(const std::string& name) {
    auto r = api_.Get(kEventServices, "shop", name);
    return r.ok() ? *r : Json::object();
  }
  std::string Condition(const std::string& service, const std::string& type) {
    return ConditionOf(Service(service), type);
  }
  bool ConditionIs(const std::string& service, const std::string& type, const std::string& want) {
    return Condition(service, type) == want;
  }
  std::string Message(const std::string& service, const std::string& type) {
    for (const auto& c : At(Service(service), "/status/conditions"))
      if (c.value("type", "") == type) return c.value("message", "");
    return "";
  }
  Json ConfigMap(const std::string& service) {
    auto r = api_.Get(kConfigMaps, "shop", "sidelog-" + service);
    return r.ok() ? *r : Json();
  }
  std::string HashOf(const std::string& service) {
    const Json hash = At(ConfigMap(service), "/metadata/annotations/" + Annotation());
    return hash.is_string() ? hash.get<std::string>() : "";
  }
  static std::string Annotation() { return EscapePointerToken(kConfigHashAnnotation); }
  Result<SidecarConfig> RenderedConfig(const std::string& service) {
    Json cm = ConfigMap(service);
    if (!cm.is_object()) return Status::NotFound("no ConfigMap");
    return ParseSidecarConfig(cm["data"][kSidecarConfigKey].get<std::string>(), "configmap");
  }
  std::vector<std::string> StreamNames(const std::string& service) {
    std::vector<std::string> names;
    auto c = RenderedConfig(service);
    if (c.ok())
      for (const auto& s : c->streams) names.push_back(s.name);
    return names;
  }
  Status AddService(const std::string& name, Json spec) {
    return api_
        .Create(kEventServices, "shop", Object("EventService", "shop", name, std::move(spec)))
        .status();
  }
  Status AddStream(const std::string& name, Json spec = Json::object()) {
    return api_.Create(kEventStreams, "shop", Object("EventStream", "shop", name, std::move(spec)))
        .status();
  }

  FakeKubeApi api_;
  Metrics metrics_;
  std::unique_ptr<Manager> manager_;
  std::unique_ptr<EventRecorder> recorder_;
  std::unique_ptr<EventServiceReconciler> reconciler_;
};

TEST_F(EventServiceTest, TheShopsServicesAreReadyWithTheirDependencies) {
  CreateShop();
  Start();
  ASSERT_TRUE(WaitFor([&] { return ConditionIs("billing", "Ready", "True/ConfigRendered"); }))
      << Service("billing").dump(2);
  ASSERT_TRUE(WaitFor([&] { return ConditionIs("orders", "Ready", "True/ConfigRendered"); }));
  EXPECT_EQ(Condition("billing", "DependenciesResolved"), "True/Resolved");
  const Json billing = Service("billing");
  EXPECT_EQ(billing["status"]["dependencies"],
            Json::parse(R"([{"service":"orders","streams":["orders"]}])"));
  EXPECT_EQ(billing["status"]["dependents"], Json::array());
  EXPECT_EQ(billing["status"]["observedGeneration"], 1);
  for (const auto& c : billing["status"]["conditions"]) EXPECT_EQ(c["observedGeneration"], 1);
  EXPECT_EQ(Service("orders")["status"]["dependents"],
            Json::parse(R"([{"service":"billing","streams":["orders"]}])"));

  const Json cm = ConfigMap("billing");
  ASSERT_TRUE(cm.is_object());
  const Json ref = cm["metadata"]["ownerReferences"][0];
  EXPECT_EQ(ref["kind"], "EventService");
  EXPECT_EQ(ref["name"], "billing");
  EXPECT_EQ(ref["uid"], billing["metadata"]["uid"]);
  EXPECT_EQ(ref["controller"], true);
  EXPECT_EQ(cm["metadata"]["labels"]["sidelog.dev/service"], "billing");
  EXPECT_EQ(billing["status"]["sidecarConfig"]["hash"], HashOf("billing"));
  EXPECT_EQ(HashOf("billing").size(), 64u);

  auto config = RenderedConfig("billing");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->service, "billing");
  EXPECT_EQ(config->ns, "shop");
  EXPECT_EQ(config->listen, "127.0.0.1:4380");
  ASSERT_TRUE(config->nats.has_value());
  EXPECT_EQ(config->nats->url, "nats://nats.sidelog-system:4222");
  ASSERT_EQ(config->streams.size(), 2u);
  EXPECT_EQ(config->streams[0].name, "payments");
  EXPECT_EQ(config->streams[0].access, StreamAccess::kWrite);
  EXPECT_EQ(config->streams[1].name, "orders");
  EXPECT_EQ(config->streams[1].access, StreamAccess::kRead);
  EXPECT_EQ(config->streams[1].types, (std::vector<std::string>{"OrderPlaced", "OrderCancelled"}));
  // The orders EventStream's rules, copied in.
  const Json rules = config->streams[1].entity;
  EXPECT_EQ(rules["stateMachine"]["initial"], "new");
  EXPECT_EQ(rules["stateMachine"]["strict"], true);
  EXPECT_TRUE(rules["reducers"].contains("ItemAdded"));
  EXPECT_TRUE(rules["schemas"].contains("OrderCreated"));
}

TEST_F(EventServiceTest, AMissingStreamIsStreamNotFoundAndLeftOutUntilItIsCreated) {
  CreateShop();
  ASSERT_TRUE(
      AddService(
          "audit",
          {{"consumes", {{{"stream", "ghost"}}, {{"stream", "ledger"}}, {{"stream", "payments"}}}}})
          .ok());
  Start();
  ASSERT_TRUE(WaitFor(
      [&] { return ConditionIs("audit", "DependenciesResolved", "False/StreamNotFound"); }));
  EXPECT_EQ(Condition("audit", "Ready"), "False/StreamNotFound");
  const std::string msg = Message("audit", "DependenciesResolved");
  EXPECT_NE(msg.find("ghost, ledger"), std::string::npos) << msg;
  EXPECT_EQ(StreamNames("audit"), std::vector<std::string>{"payments"})
      << "rendered without the missing streams";
  EXPECT_EQ(Service("audit")["status"]["dependencies"],
            Json::parse(R"([{"service":"billing","streams":["payments"]}])"));

  ASSERT_TRUE(AddStream("ghost").ok());
  ASSERT_TRUE(AddStream("ledger").ok());
  ASSERT_TRUE(WaitFor([&] { return ConditionIs("audit", "Ready", "True/ConfigRendered"); }));
  EXPECT_EQ(StreamNames("audit"), (std::vector<std::string>{"ghost", "ledger", "payments"}));

  ASSERT_TRUE(api_.Delete(kEventStreams, "shop", "ledger").ok());
  ASSERT_TRUE(WaitFor(
      [&] { return ConditionIs("audit", "DependenciesResolved", "False/StreamNotFound"); }));
  EXPECT_EQ(StreamNames("audit"), (std::vector<std::string>{"ghost", "payments"}));
}

TEST_F(EventServiceTest, ADeliveryIsRenderedForTheSidecarAndOneItWouldRefuseIsInvalidSpec) {
  CreateShop();
  Start();
  // The shop's billing pushes orders to its app on spec.appPort.
  ASSERT_TRUE(WaitFor([&] { return ConditionIs("billing", "Ready", "True/ConfigRendered"); }));
  auto config = RenderedConfig("billing");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->app_port, 8080);
  const StreamConfig* orders = config->FindStream("orders");
  ASSERT_NE(orders, nullptr);
  ASSERT_TRUE(orders->deliver.has_value());
  EXPECT_EQ(orders->deliver->path, "/events/orders");
  EXPECT_EQ(orders->deliver->max_attempts, 8);
  EXPECT_EQ(orders->deliver->max_backoff_ms, 10000);
  EXPECT_FALSE(config->FindStream("payments")->deliver.has_value());

  // A timeout the API server's schema lets through but the sidecar refuses (over 5m).
  ASSERT_TRUE(
      AddService("slow",
                 {{"consumes",
                   {{{"stream", "orders"}, {"deliver", {{"path", "/e"}, {"timeout", "1h"}}}}}}})
          .ok());
  ASSERT_TRUE(WaitFor([&] { return ConditionIs("slow", "Ready", "False/InvalidSpec"); }))
      << Condition("slow", "Ready");
  const std::string msg = Message("slow", "Ready");
  EXPECT_NE(msg.find("stream orders: deliver.timeout: must be a duration between 10ms and 5m"),
            std::string::npos)
      << msg;
  EXPECT_FALSE(ConfigMap("slow").is_object()) << "a config the sidecar refuses is not written";
}

TEST_F(EventServiceTest, ASecondProducerOfASingleStreamAloneGetsProducerConflict) {
  CreateShop();
  Start();
  ASSERT_TRUE(WaitFor([&] { return ConditionIs("orders", "Ready", "True/ConfigRendered"); }));
  ASSERT_TRUE(AddService("rogue", {{"produces", {"orders"}}}).ok());
  ASSERT_TRUE(WaitFor(
      [&] { return ConditionIs("rogue", "DependenciesResolved", "False/ProducerConflict"); }));
  EXPECT_NE(Message("rogue", "DependenciesResolved").find("produced by EventService orders"),
            std::string::npos)
      << Message("rogue", "DependenciesResolved");
  EXPECT_EQ(StreamNames("rogue"), std::vector<std::string>{})
      << "the conflicting stream is left out";
  EXPECT_EQ(Condition("orders", "DependenciesResolved"), "True/Resolved");
  EXPECT_EQ(Condition("billing", "Ready"), "True/ConfigRendered");
  // billing depends on the keeper, not on the rogue.
  EXPECT_EQ(Service("billing")["status"]["dependencies"],
            Json::parse(R"([{"service":"orders","streams":["orders"]}])"));

  // With producerPolicy Multiple both may produce: the conflict resolves by itself.
  ASSERT_TRUE(
      api_.MergePatch(kEventStreams, "shop", "orders", {{"spec", {{"producerPolicy", "Multiple"}}}})
          .ok());
  ASSERT_TRUE(WaitFor([&] { return ConditionIs("rogue", "Ready", "True/ConfigRendered"); }));
  EXPECT_TRUE(WaitFor([&] {
    return Service("billing")["status"]["dependencies"] ==
           Json::parse(
               R"([{"service":"orders","streams":["orders"]},{"service":"rogue","streams":["orders"]}])");
  })) << Service("billing")["status"].dump();
}

TEST_F(EventServiceTest, ACycleIsListedAndWarnedAboutByDefault) {
  ASSERT_TRUE(AddStream("x").ok());
  ASSERT_TRUE(AddStream("y").ok());
  ASSERT_TRUE(AddService("a", {{"produces", {"x"}}, {"consumes", {{{"stream", "y"}}}}}).ok());
  ASSERT_TRUE(AddService("b", {{"produces", {"y"}}, {"consumes", {{{"stream", "x"}}}}}).ok());
  Start(CyclePolicy::kWarn);
  ASSERT_TRUE(WaitFor([&] {
    return At(Service("a"), "/status/cycles") == Json::array({"a -> b -> a"});
  })) << Service("a").dump(2);
  EXPECT_EQ(Condition("a", "DependenciesResolved"), "True/Resolved");
  EXPECT_EQ(Condition("a", "Ready"), "True/ConfigRendered");
  EXPECT_EQ(Service("b")["status"]["cycles"], Json::array({"b -> a -> b"}));
  EXPECT_TRUE(WaitFor([&] {
    auto events = api_.List({"", "v1", "events", "Event", true}, "shop");
    for (const auto& e : (*events)["items"])
      if (e.value("reason", "") == "DependencyCycle" && e.value("type", "") == "Warning")
        return true;
    return false;
  }));

  // Breaking the cycle clears the list.
  ASSERT_TRUE(
      api_.MergePatch(kEventServices, "shop", "b", {{"spec", {{"consumes", nullptr}}}}).ok());
  EXPECT_TRUE(WaitFor([&] { return !Service("a")["status"].contains("cycles"); }))
      << Service("a").dump(2);
}

TEST_F(EventServiceTest, ACycleOfThreeIsCycleDetectedWhenCyclesAreDenied) {
  for (const char* s : {"x", "y", "z"}) ASSERT_TRUE(AddStream(s).ok());
  ASSERT_TRUE(AddService("a", {{"produces", {"x"}}, {"consumes", {{{"stream", "z"}}}}}).ok());
  ASSERT_TRUE(AddService("b", {{"produces", {"y"}}, {"consumes", {{{"stream", "x"}}}}}).ok());
  ASSERT_TRUE(AddService("c", {{"produces", {"z"}}, {"consumes", {{{"stream", "y"}}}}}).ok());
  ASSERT_TRUE(AddService("d", {{"consumes", {{{"stream", "x"}}}}}).ok());
  Start(CyclePolicy::kDeny);
  for (const char* s : {"a", "b", "c"}) {
    EXPECT_TRUE(WaitFor([&] {
      return ConditionIs(s, "DependenciesResolved", "False/CycleDetected");
    })) << s;
  }
  EXPECT_NE(Message("a", "DependenciesResolved").find("a -> c -> b -> a"), std::string::npos)
      << Message("a", "DependenciesResolved");
  EXPECT_EQ(Condition("a", "Ready"), "False/CycleDetected");
  EXPECT_EQ(StreamNames("a"), (std::vector<std::string>{"x", "z"}))
      << "a cycle leaves no stream out";
  EXPECT_TRUE(WaitFor([&] { return ConditionIs("d", "Ready", "True/ConfigRendered"); }))
      << "a service that only consumes from the cycle is not in it";
}

TEST_F(EventServiceTest, CyclesAreIgnoredWhenAllowed) {
  ASSERT_TRUE(AddStream("x").ok());
  ASSERT_TRUE(AddStream("y").ok());
  ASSERT_TRUE(AddService("a", {{"produces", {"x"}}, {"consumes", {{{"stream", "y"}}}}}).ok());
  ASSERT_TRUE(AddService("b", {{"produces", {"y"}}, {"consumes", {{{"stream", "x"}}}}}).ok());
  Start(CyclePolicy::kAllow);
  ASSERT_TRUE(WaitFor([&] { return ConditionIs("a", "Ready", "True/ConfigRendered"); }));
  EXPECT_FALSE(Service("a")["status"].contains("cycles"));
}

TEST_F(EventServiceTest, ChangingAStreamsReducersRerendersEveryServiceThatListsIt) {
  CreateShop();
  Start();
  ASSERT_TRUE(WaitFor([&] { return ConditionIs("billing", "Ready", "True/ConfigRendered"); }));
  ASSERT_TRUE(WaitFor([&] { return ConditionIs("orders", "Ready", "True/ConfigRendered"); }));
  const std::string billing = HashOf("billing"), orders = HashOf("orders");
  const int applies = api_.Writes("apply", "configmaps");

  // Counters in an EventStream's status change nothing.
  ASSERT_TRUE(api_.MergePatch(kEventStreams, "shop", "orders",
                              {{"status", {{"jetStream", {{"events", 5}}}}}}, "status")
                  .ok());
  ASSERT_TRUE(
      api_.MergePatch(kEventStreams, "shop", "orders",
                      {{"spec",
                        {{"entity",
                          {{"reducers",
                            {{"OrderShipped",
                              {{{"op", "set"}, {"path", "/shipped"}, {"value", true}}}}}}}}}}})
          .ok());
  ASSERT_TRUE(WaitFor([&] { return HashOf("billing") != billing && HashOf("orders") != orders; }));
  auto config = RenderedConfig("billing");
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(config->streams[1].entity["reducers"].contains("OrderShipped"));
  EXPECT_EQ(api_.Writes("apply", "configmaps"), applies + 2) << "one apply per changed config";
  EXPECT_TRUE(WaitFor(
      [&] { return Service("billing")["status"]["sidecarConfig"]["hash"] == HashOf("billing"); }));
}

TEST_F(EventServiceTest, AnUnchangedServiceIsReconciledWithoutWrites) {
  CreateShop();
  Start();
  ASSERT_TRUE(WaitFor([&] { return ConditionIs("billing", "Ready", "True/ConfigRendered"); }));
  ASSERT_TRUE(WaitFor([&] { return ConditionIs("orders", "Ready", "True/ConfigRendered"); }));
  ASSERT_TRUE(WaitFor([&] { return manager_->client() && api_.Writes("apply") == 2; }));
  // Let the informers catch up with the last writes, then reconcile by hand.
  ASSERT_TRUE(WaitFor([&] {
    auto cached = manager_->InformerFor(kConfigMaps)->Get("shop/sidelog-billing");
    return cached && At(*cached, "/metadata/annotations/" + Annotation()) == HashOf("billing");
  }));
  const int before = api_.Writes("apply") + api_.Writes("patch");
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(reconciler_->Reconcile("shop/billing").ok());
  EXPECT_EQ(api_.Writes("apply") + api_.Writes("patch"), before);
}

TEST_F(EventServiceTest, AConfigMapDeletedByHandIsRenderedAgain) {
  CreateShop();
  Start();
  ASSERT_TRUE(WaitFor([&] { return !HashOf("billing").empty(); }));
  const std::string hash = HashOf("billing");
  ASSERT_TRUE(api_.Delete(kConfigMaps, "shop", "sidelog-billing").ok());
  EXPECT_TRUE(WaitFor([&] { return HashOf("billing") == hash; }));
}

TEST_F(EventServiceTest, AFailedWriteIsRetried) {
  CreateShop();
  api_.FailNextWrite(Status::Unavailable("etcd is slow"));
  Start();
  EXPECT_TRUE(WaitFor([&] {
    return ConditionIs("billing", "Ready", "True/ConfigRendered") &&
           ConditionIs("orders", "Ready", "True/ConfigRendered");
  }));
}

// A pod labelled for injection, of `service`, in `phase`; `injected` adds the webhook's mark.
Json Pod(const std::string& name, const std::string& service, const std::string& phase,
         bool injected = true) {
  Json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata",
               {{"name", name},
                {"namespace", "shop"},
                {"labels", {{kInjectLabel, "true"}, {kServiceLabel, service}}}}},
              {"status", {{"phase", phase}}}};
  if (injected) pod["metadata"]["annotations"] = {{kInjectedAnnotation, "0.1.0"}};
  return pod;
}

TEST_F(EventServiceTest, InjectedPodsCountsTheServicesRunningPodsWithTheSidecar) {
  CreateShop();
  ASSERT_TRUE(api_.Create(kPods, "shop", Pod("orders-1", "orders", "Running")).ok());
  ASSERT_TRUE(api_.Create(kPods, "shop", Pod("orders-2", "orders", "Pending")).ok());
  ASSERT_TRUE(api_.Create(kPods, "shop", Pod("orders-3", "orders", "Running", false)).ok());
  ASSERT_TRUE(api_.Create(kPods, "shop", Pod("billing-1", "billing", "Running")).ok());
  Start();
  auto injected = [&](const std::string& service) {
    return Service(service).value("/status/injectedPods"_json_pointer, int64_t{-1});
  };
  EXPECT_TRUE(WaitFor([&] { return injected("orders") == 1 && injected("billing") == 1; }))
      << injected("orders") << " " << injected("billing");

  // The pending pod starts: counted without any change to the EventService.
  ASSERT_TRUE(
      api_.MergePatch(kPods, "shop", "orders-2", {{"status", {{"phase", "Running"}}}}, "status")
          .ok());
  EXPECT_TRUE(WaitFor([&] { return injected("orders") == 2; })) << injected("orders");
  // A pod goes.
  ASSERT_TRUE(api_.Delete(kPods, "shop", "orders-1").ok());
  EXPECT_TRUE(WaitFor([&] { return injected("orders") == 1; })) << injected("orders");
  EXPECT_EQ(injected("billing"), 1);
}

}  // namespace
}  // namespace sidelog::op
