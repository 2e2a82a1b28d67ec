// What the operator runs for a Consolidator: the rendering against golden files
// (tests/operator/golden/; SIDELOG_UPDATE_GOLDEN=1 rewrites them after an intended change),
// what sidelog-consolidator's own loader makes of the rendered config, which spec changes
// rebuild or restart, and the reconciler against FakeKubeApi run by a Manager: the objects it
// applies, a spec the database rejects, an object it does not own.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "config.h"
#include "consolidator_reconciler.h"
#include "consolidator_workload.h"
#include "eventservice_reconciler.h"
#include "fake_kube_api.h"
#include "manager.h"
#include "operator_test_util.h"
#include "shop_objects.h"
#include "sidecar_config.h"

namespace sidelog::op {
namespace {

using testing::At;
using testing::ConditionOf;
using testing::ShopObjects;
using testing::WaitFor;

std::string Golden(const std::string& name) {
  return std::string(SIDELOG_SOURCE_DIR) + "/tests/operator/golden/" + name;
}

void ExpectGolden(const std::string& name, const std::string& text) {
  if (std::getenv("SIDELOG_UPDATE_GOLDEN")) {
    std::ofstream(Golden(name)) << text;
    return;
  }
  std::ifstream in(Golden(name));
  ASSERT_TRUE(in) << "missing " << Golden(name) << " (SIDELOG_UPDATE_GOLDEN=1 writes it)";
  std::stringstream want;
  want << in.rdbuf();
  EXPECT_EQ(text, want.str()) << "rendering of " << name << " changed";
}

// The shop's order-summary, as the API server stores it.
Json OrderSummary() {
  Json c = ShopObjects("Consolidator", {"examples/shop/k8s/consolidator.yaml"}).at(0);
  c["metadata"]["uid"] = "5f0c3c1e-0000-4000-8000-000000000001";
  c["metadata"]["generation"] = 1;
  return c;
}

Json OnPostgres(Json c) {
  c["spec"]["target"] = {{"postgres", {{"connectionSecretRef", {{"name", "shop-db"}}}}}};
  c["spec"]["replicas"] = 2;
  c["spec"]["resources"] = {{"requests", {{"cpu", "100m"}, {"memory", "128Mi"}}}};
  return c;
}

ConsolidatorSettings Settings() {
  ConsolidatorSettings s;
  s.image = "docker.io/sidelog/consolidator:0.1.0";
  s.nats.url = "nats://nats.sidelog-system:4222";
  s.nats.creds_file = "/etc/sidelog/nats/creds/user.creds";
  s.nats.password = "must-not-appear";
  s.nats_creds_secret = "sidelog-nats-creds";
  return s;
}

std::string Everything(const ConsolidatorWorkload& w) {
  return ToYaml(w.config_map) + "---\n" + ToYaml(w.workload) + "---\n" + ToYaml(w.service);
}

TEST(ConsolidatorRendering, TheShopsReadModelRendersAsTheGoldenFiles) {
  ExpectGolden("consolidator-sqlite.yaml",
               Everything(RenderConsolidator(OrderSummary(), Settings())));
  ExpectGolden("consolidator-postgres.yaml",
               Everything(RenderConsolidator(OnPostgres(OrderSummary()), Settings())));
}

TEST(ConsolidatorRendering, SqliteIsAStatefulSetOfOneWithAClaimOfTheSpecsSize) {
  Json c = OrderSummary();
  c["spec"]["target"]["sqlite"] = {{"size", "5Gi"}, {"storageClassName", "fast"}};
  const ConsolidatorWorkload w = RenderConsolidator(c, Settings());
  ASSERT_TRUE(w.stateful());
  EXPECT_EQ(w.workload["spec"]["replicas"], 1);
  const Json claim = w.workload["spec"]["volumeClaimTemplates"][0];
  EXPECT_EQ(claim["spec"]["resources"]["requests"]["storage"], "5Gi");
  EXPECT_EQ(claim["spec"]["storageClassName"], "fast");
  const Json pod = w.workload["spec"]["template"];
  EXPECT_EQ(pod["metadata"]["annotations"][kConfigHashAnnotation], w.config_hash);
  const Json container = pod["spec"]["containers"][0];
  EXPECT_EQ(container["image"], "docker.io/sidelog/consolidator:0.1.0");
  EXPECT_EQ(container["securityContext"]["readOnlyRootFilesystem"], true);
  EXPECT_EQ(container["securityContext"]["capabilities"]["drop"], Json::array({"ALL"}));
  EXPECT_EQ(container["readinessProbe"]["httpGet"]["path"], "/readyz");
  for (const Json* o : {&w.config_map, &w.workload, &w.service}) {
    EXPECT_EQ((*o)["metadata"]["ownerReferences"][0]["uid"], c["metadata"]["uid"]) << o->dump();
    EXPECT_EQ((*o)["metadata"]["ownerReferences"][0]["controller"], true);
  }
  // The image from the spec wins over the operator's.
  c["spec"]["image"] = "registry.example/cons:1";
  EXPECT_EQ(RenderConsolidator(c, Settings())
                .workload["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.example/cons:1");
}

TEST(ConsolidatorRendering, PostgresIsADeploymentWithTheConnectionFromTheSecretOnly) {
  const ConsolidatorWorkload w = RenderConsolidator(OnPostgres(OrderSummary()), Settings());
  ASSERT_FALSE(w.stateful());
  EXPECT_EQ(w.workload["kind"], "Deployment");
  EXPECT_EQ(w.workload["spec"]["replicas"], 2);
  const Json container = w.workload["spec"]["template"]["spec"]["containers"][0];
  EXPECT_EQ(container["env"][0]["name"], kDatabaseEnv);
  EXPECT_EQ(container["env"][0]["valueFrom"]["secretKeyRef"],
            Json({{"name", "shop-db"}, {"key", "uri"}}));
  EXPECT_EQ(container["resources"]["requests"]["cpu"], "100m");
  EXPECT_EQ(w.yaml.find("must-not-appear"), std::string::npos) << w.yaml;
  EXPECT_EQ(w.yaml.find("postgresql://"), std::string::npos) << w.yaml;
}

TEST(ConsolidatorRendering, TheConsolidatorLoadsTheRenderedConfig) {
  const Json c = OrderSummary();
  auto config =
      consolidator::ParseConsolidatorConfig(RenderConsolidatorConfig(c, Settings()), "rendered");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->name, "order-summary");
  EXPECT_EQ(config->ns, "shop");
  EXPECT_EQ(config->delivery, consolidator::Delivery::kPull);
  EXPECT_EQ(config->listen, "0.0.0.0:4390");
  ASSERT_TRUE(config->sqlite);
  EXPECT_EQ(config->sqlite->path, "/var/lib/sidelog/order-summary.db");
  EXPECT_EQ(config->schema, c["spec"]["schema"].get<std::string>());
  ASSERT_EQ(config->handlers.size(), c["spec"]["handlers"].size());
  for (size_t i = 0; i < config->handlers.size(); ++i) {
    const Json& h = c["spec"]["handlers"][i];
    EXPECT_EQ(config->handlers[i].stream + "/" + config->handlers[i].type, h["event"]);
    EXPECT_EQ(config->handlers[i].sql, h["sql"].get<std::string>());
  }
  EXPECT_EQ(config->queries.size(), 3u);
  EXPECT_EQ(config->max_batch_delay, std::chrono::milliseconds(200));
  ASSERT_TRUE(config->nats);
  EXPECT_EQ(config->nats->creds_file, "/etc/sidelog/nats/creds/user.creds");

  setenv(kDatabaseEnv, "postgresql://u@db/shop", 1);
  auto pg = consolidator::ParseConsolidatorConfig(
      RenderConsolidatorConfig(OnPostgres(c), Settings()), "rendered");
  unsetenv(kDatabaseEnv);
  ASSERT_TRUE(pg.ok()) << pg.status().message();
  ASSERT_TRUE(pg->postgres);
  EXPECT_EQ(pg->postgres->connection, "postgresql://u@db/shop");
  EXPECT_EQ(pg->replicas, 2);
}

TEST(ConsolidatorRendering, ProjectionChangesRebuildOtherChangesRestart) {
  const Json spec = OrderSummary()["spec"];
  auto with = [&](const std::string& pointer, const Json& value) {
    Json s = spec;
    s[Json::json_pointer(pointer)] = value;
    return s;
  };
  EXPECT_EQ(ClassifySpecChange(spec, spec), SpecChange::kNone);
  EXPECT_EQ(ClassifySpecChange(spec, with("/schema", "CREATE TABLE IF NOT EXISTS t (a TEXT);")),
            SpecChange::kRebuild);
  EXPECT_EQ(ClassifySpecChange(spec, with("/handlers/0/sql", "SELECT 1")), SpecChange::kRebuild);
  EXPECT_EQ(ClassifySpecChange(spec, with("/sources/1/types", Json::array({"CustomerRegistered"}))),
            SpecChange::kRebuild);
  EXPECT_EQ(ClassifySpecChange(spec, with("/queries/order", "SELECT * FROM orders")),
            SpecChange::kRestart);
  EXPECT_EQ(ClassifySpecChange(spec, with("/batch/maxEvents", 50)), SpecChange::kRestart);
  EXPECT_EQ(ClassifySpecChange(spec, with("/image", "x:1")), SpecChange::kRestart);
  EXPECT_EQ(ClassifySpecChange(spec, with("/delivery", "push")), SpecChange::kRestart);
  // What the pods run changes with a restart-only change; the projection does not.
  const Json c = OrderSummary();
  Json batch = c;
  batch["spec"]["batch"]["maxEvents"] = 50;
  EXPECT_NE(RenderConsolidator(c, Settings()).config_hash,
            RenderConsolidator(batch, Settings()).config_hash);
  EXPECT_EQ(RenderConsolidator(c, Settings()).projection_hash,
            RenderConsolidator(batch, Settings()).projection_hash);
}

class ConsolidatorReconcilerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (manager_) manager_->Stop();
  }

  void Start() {
    manager_ = std::make_unique<Manager>(&api_, "", &metrics_);
    recorder_ = std::make_unique<EventRecorder>(manager_->client(), "sidelog-operator", "test");
    ConsolidatorOptions o;
    o.workload = Settings();
    const Selector owned = ConsolidatorObjectSelector();
    reconciler_ = std::make_unique<ConsolidatorReconciler>(
        manager_->client(), manager_->InformerFor(kConsolidators),
        manager_->InformerFor(kConfigMaps, owned), manager_->InformerFor(kStatefulSets, owned),
        manager_->InformerFor(kDeployments, owned), manager_->InformerFor(kServices, owned),
        manager_->InformerFor(kPods, owned), recorder_.get(), o);
    ControllerOptions c;
    c.resync_period = std::chrono::hours(1);
    reconciler_->WatchOwned(manager_->AddController(kConsolidators, reconciler_.get(), c));
    manager_->Start();
    ASSERT_TRUE(manager_->WaitUntilReady(std::chrono::seconds(5)));
  }

  Json Get(const ResourceType& type, const std::string& name) {
    auto r = api_.Get(type, "shop", name);
    return r.ok() ? *r : Json();
  }
  std::string Ready() { return ConditionOf(Get(kConsolidators, "order-summary"), "Ready"); }
  std::string ReadyMessage() {
    for (const auto& c : At(Get(kConsolidators, "order-summary"), "/status/conditions")) {
      if (c.value("type", "") == "Ready") return c.value("message", "");
    }
    return "";
  }

  FakeKubeApi api_;
  Metrics metrics_;
  std::unique_ptr<Manager> manager_;
  std::unique_ptr<EventRecorder> recorder_;
  std::unique_ptr<ConsolidatorReconciler> reconciler_;
};

TEST_F(ConsolidatorReconcilerTest, TheShopsReadModelGetsItsConfigMapStatefulSetAndService) {
  Json c = OrderSummary();
  c["metadata"].erase("uid");
  ASSERT_TRUE(api_.Create(kConsolidators, "shop", c).ok());
  Start();
  ASSERT_TRUE(WaitFor([&] { return Ready() == "False/WorkloadNotReady"; })) << Ready();
  const Json cons = Get(kConsolidators, "order-summary");
  const std::string uid = cons["metadata"]["uid"];
  for (const auto& [type, name] :
       {std::pair{&kConfigMaps, "order-summary-consolidator"},
        std::pair{&kStatefulSets, "order-summary"}, std::pair{&kServices, "order-summary"}}) {
    Json o = Get(*type, name);
    ASSERT_TRUE(o.is_object()) << type->kind << " " << name;
    EXPECT_EQ(o["metadata"]["ownerReferences"][0]["uid"], uid) << o.dump();
    EXPECT_EQ(o["metadata"]["labels"][kConsolidatorLabel], "order-summary");
  }
  EXPECT_NE(ReadyMessage().find("StatefulSet order-summary: 0 of 1 pods ready"), std::string::npos)
      << ReadyMessage();
  EXPECT_EQ(cons["status"]["projectionHash"], ProjectionHash(cons["spec"]));
  EXPECT_EQ(ConditionOf(cons, "Rebuilding"), "False/Idle");

  // Reconciling again writes nothing once the informers have seen the objects (on a loaded
  // machine they may not have yet, and a reconcile applies them again): every object came
  // from the same rendering.
  ASSERT_TRUE(WaitFor([&] {
    const int before = api_.Writes("apply");
    return reconciler_->Reconcile("shop/order-summary").ok() && api_.Writes("apply") == before;
  }));
  const int writes = api_.Writes("apply");
  ASSERT_TRUE(reconciler_->Reconcile("shop/order-summary").ok());
  EXPECT_EQ(api_.Writes("apply"), writes);
}

TEST_F(ConsolidatorReconcilerTest, AChangedHandlerIsAProjectionChangeAndABatchChangeIsNot) {
  Json c = OrderSummary();
  c["metadata"].erase("uid");
  ASSERT_TRUE(api_.Create(kConsolidators, "shop", c).ok());
  Start();
  auto status = [&] { return At(Get(kConsolidators, "order-summary"), "/status"); };
  ASSERT_TRUE(WaitFor([&] { return status().contains("projectionHash"); }));
  const std::string config_hash =
      At(Get(kStatefulSets, "order-summary"), "/spec/template/metadata/annotations")
          .value(kConfigHashAnnotation, "");

  // batch only restarts: a new pod template, no rebuild.
  ASSERT_TRUE(api_.MergePatch(kConsolidators, "shop", "order-summary",
                              {{"spec", {{"batch", {{"maxEvents", 50}}}}}})
                  .ok());
  ASSERT_TRUE(WaitFor([&] {
    return At(Get(kStatefulSets, "order-summary"), "/spec/template/metadata/annotations")
               .value(kConfigHashAnnotation, "") != config_hash;
  }));
  EXPECT_FALSE(status().contains("rebuild")) << status().dump();
  EXPECT_EQ(ConditionOf(Get(kConsolidators, "order-summary"), "Rebuilding"), "False/Idle");

  // A handler change is a rebuild, recorded with its reason; the annotation is left alone.
  Json handlers = c["spec"]["handlers"];
  handlers[3]["sql"] = "UPDATE orders SET items = items + 10 WHERE id = :entity";
  ASSERT_TRUE(
      api_.MergePatch(kConsolidators, "shop", "order-summary", {{"spec", {{"handlers", handlers}}}})
          .ok());
  ASSERT_TRUE(WaitFor([&] { return At(status(), "/rebuild/reason") == "ProjectionChanged"; }))
      << status().dump();
  EXPECT_EQ(At(status(), "/rebuild/state"), "requested");
  EXPECT_EQ(ConditionOf(Get(kConsolidators, "order-summary"), "Rebuilding"),
            "True/ProjectionChanged");
  EXPECT_EQ(status()["projectionHash"],
            ProjectionHash(Get(kConsolidators, "order-summary")["spec"]));
}

TEST_F(ConsolidatorReconcilerTest, AHandlerTheDatabaseRejectsIsInvalidSpecAndNothingIsRolledOut) {
  Json c = OrderSummary();
  c["metadata"].erase("uid");
  c["spec"]["handlers"][5]["sql"] = "UPDATE orderz SET status = 'paid' WHERE id = :entity";
  ASSERT_TRUE(api_.Create(kConsolidators, "shop", c).ok());
  Start();
  ASSERT_TRUE(WaitFor([&] { return Ready() == "False/InvalidSpec"; })) << Ready();
  const std::string message = ReadyMessage();
  EXPECT_NE(message.find("handlers[5] (orders/OrderPaid)"), std::string::npos) << message;
  EXPECT_NE(message.find("no such table: orderz"), std::string::npos) << message;
  EXPECT_FALSE(Get(kStatefulSets, "order-summary").is_object()) << "rolled out a bad spec";

  // A query that writes is refused by the database too.
  ASSERT_TRUE(api_.MergePatch(kConsolidators, "shop", "order-summary",
                              {{"spec",
                                {{"handlers", OrderSummary()["spec"]["handlers"]},
                                 {"queries", {{"wipe", "DELETE FROM orders"}}}}}})
                  .ok());
  ASSERT_TRUE(WaitFor([&] { return ReadyMessage().find("wipe") != std::string::npos; }))
      << ReadyMessage();
  EXPECT_EQ(Ready(), "False/InvalidSpec");

  // Fixed: rolled out.
  ASSERT_TRUE(api_.MergePatch(kConsolidators, "shop", "order-summary",
                              {{"spec", {{"queries", {{"wipe", nullptr}}}}}})
                  .ok());
  ASSERT_TRUE(WaitFor([&] { return Get(kStatefulSets, "order-summary").is_object(); }));
  ASSERT_TRUE(WaitFor([&] { return Ready() == "False/WorkloadNotReady"; })) << Ready();
}

TEST_F(ConsolidatorReconcilerTest, ASchemaThatDoesNotApplyTwiceIsRefused) {
  Json c = OrderSummary();
  c["metadata"].erase("uid");
  std::string schema = c["spec"]["schema"];
  for (auto at = schema.find(" IF NOT EXISTS"); at != std::string::npos;
       at = schema.find(" IF NOT EXISTS")) {
    schema.erase(at, 14);
  }
  c["spec"]["schema"] = schema;
  ASSERT_TRUE(api_.Create(kConsolidators, "shop", c).ok());
  Start();
  ASSERT_TRUE(WaitFor([&] { return Ready() == "False/InvalidSpec"; })) << Ready();
  EXPECT_NE(ReadyMessage().find("IF NOT EXISTS"), std::string::npos) << ReadyMessage();
}

TEST_F(ConsolidatorReconcilerTest, AServiceOfTheSameNameItDoesNotOwnIsLeftAlone) {
  ASSERT_TRUE(api_.Create(kServices, "shop",
                          {{"apiVersion", "v1"},
                           {"kind", "Service"},
                           {"metadata", {{"name", "order-summary"}, {"namespace", "shop"}}},
                           {"spec", {{"ports", {{{"port", 80}}}}}}})
                  .ok());
  Json c = OrderSummary();
  c["metadata"].erase("uid");
  ASSERT_TRUE(api_.Create(kConsolidators, "shop", c).ok());
  Start();
  ASSERT_TRUE(WaitFor([&] { return Ready() == "False/ResourceConflict"; })) << Ready();
  EXPECT_NE(ReadyMessage().find("Service order-summary exists and is not owned"), std::string::npos)
      << ReadyMessage();
  EXPECT_EQ(Get(kServices, "order-summary")["spec"]["ports"][0]["port"], 80);
}

TEST_F(ConsolidatorReconcilerTest, ChangingTheTargetReplacesTheWorkloadKind) {
  Json c = OrderSummary();
  c["metadata"].erase("uid");
  ASSERT_TRUE(api_.Create(kConsolidators, "shop", c).ok());
  Start();
  ASSERT_TRUE(WaitFor([&] { return Get(kStatefulSets, "order-summary").is_object(); }));
  ASSERT_TRUE(
      api_.MergePatch(kConsolidators, "shop", "order-summary",
                      {{"spec",
                        {{"target",
                          {{"sqlite", nullptr},
                           {"postgres", {{"connectionSecretRef", {{"name", "shop-db"}}}}}}}}}})
          .ok());
  ASSERT_TRUE(WaitFor([&] { return Get(kDeployments, "order-summary").is_object(); }));
  ASSERT_TRUE(WaitFor([&] { return !Get(kStatefulSets, "order-summary").is_object(); }));
}

}  // namespace
}  // namespace sidelog::op
