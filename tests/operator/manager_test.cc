// The manager's machinery against FakeKubeApi: shared informers, which changes enqueue a
// reconcile (status alone does not), mapping a change of another kind to the keys that care,
// read-your-writes, and the write counters.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>

#include "fake_kube_api.h"
#include "manager.h"
#include "operator_test_util.h"

namespace sidelog::op {
namespace {

using testing::Object;
using testing::WaitFor;

const ResourceType kWidgets{"example.dev", "v1", "widgets", "Widget", true};
const ResourceType kGadgets{"", "v1", "configmaps", "ConfigMap", true};

// Counts reconciles per key; optionally writes status on each (as real reconcilers do).
class CountingReconciler : public Reconciler {
 public:
  explicit CountingReconciler(KubeApi* client = nullptr) : client_(client) {}
  Result<ReconcileResult> Reconcile(const std::string& key) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++count_[key];
    }
    if (client_) {
      std::string ns, name;
      SplitKey(key, &ns, &name);
      auto r =
          client_->MergePatch(kWidgets, ns, name, {{"status", {{"seen", ++writes_}}}}, "status");
      if (!r.ok()) return r.status();
    }
    return ReconcileResult{};
  }
  int Count(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    return count_[key];
  }

 private:
  KubeApi* client_;
  std::mutex mu_;
  std::map<std::string, int> count_;
  std::atomic<int> writes_{0};
};

ControllerOptions Options() {
  ControllerOptions o;
  o.workers = 2;
  o.resync_period = std::chrono::hours(1);  // no periodic reconciles in these tests
  return o;
}

TEST(Manager, SharesOneInformerPerKindAndSelector) {
  FakeKubeApi api;
  Metrics metrics;
  Manager m(&api, "", &metrics);
  EXPECT_EQ(m.InformerFor(kWidgets), m.InformerFor(kWidgets));
  EXPECT_NE(m.InformerFor(kWidgets), m.InformerFor(kWidgets, {"tier=a", ""}));
  CountingReconciler r;
  m.AddController(kWidgets, &r, Options());
  EXPECT_EQ(m.InformerFor(kWidgets), m.InformerFor(kWidgets)) << "the controller reuses it";
}

TEST(Manager, ReconcilesOnlyAfterEveryInformerHasSynced) {
  FakeKubeApi api;
  ASSERT_TRUE(api.Create(kWidgets, "ns", Object("Widget", "ns", "a", {{"size", 1}})).ok());
  Metrics metrics;
  Manager m(&api, "", &metrics);
  CountingReconciler r;
  m.AddController(kWidgets, &r, Options());
  Informer* gadgets = m.InformerFor(kGadgets);
  m.Start();
  ASSERT_TRUE(m.WaitUntilReady(std::chrono::seconds(5)));
  EXPECT_TRUE(gadgets->HasSynced());
  EXPECT_TRUE(WaitFor([&] { return r.Count("ns/a") == 1; }));
  m.Stop();
}

TEST(Manager, AStatusOnlyChangeDoesNotEnqueueButSpecLabelsAndFinalizersDo) {
  FakeKubeApi api;
  ASSERT_TRUE(api.Create(kWidgets, "ns", Object("Widget", "ns", "a", {{"size", 1}})).ok());
  Metrics metrics;
  Manager m(&api, "", &metrics);
  CountingReconciler r;
  m.AddController(kWidgets, &r, Options());
  m.Start();
  ASSERT_TRUE(WaitFor([&] { return r.Count("ns/a") == 1; }));

  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(api.MergePatch(kWidgets, "ns", "a", {{"status", {{"events", i}}}}, "status").ok());
  }
  // A spec change after the status changes: once it is reconciled, every earlier event has
  // been handled too (one informer thread, in order).
  ASSERT_TRUE(api.MergePatch(kWidgets, "ns", "a", {{"spec", {{"size", 2}}}}).ok());
  ASSERT_TRUE(WaitFor([&] { return r.Count("ns/a") == 2; }));
  ASSERT_TRUE(api.MergePatch(kWidgets, "ns", "a", {{"metadata", {{"labels", {{"x", "y"}}}}}}).ok());
  ASSERT_TRUE(WaitFor([&] { return r.Count("ns/a") == 3; }));
  ASSERT_TRUE(
      api.MergePatch(kWidgets, "ns", "a", {{"metadata", {{"finalizers", {"example.dev/f"}}}}})
          .ok());
  ASSERT_TRUE(WaitFor([&] { return r.Count("ns/a") == 4; }));
  EXPECT_EQ(r.Count("ns/a"), 4) << "20 status-only changes reconciled nothing";
  m.Stop();
}

TEST(Manager, AReconcilerThatWritesStatusIsNotReconciledAgainByItsOwnWrite) {
  FakeKubeApi api;
  ASSERT_TRUE(api.Create(kWidgets, "ns", Object("Widget", "ns", "a", {{"size", 1}})).ok());
  Metrics metrics;
  Manager m(&api, "", &metrics);
  CountingReconciler r(m.client());
  m.AddController(kWidgets, &r, Options());
  m.Start();
  ASSERT_TRUE(WaitFor([&] { return api.Writes("patch", "widgets/status") == 1; }));
  // A later spec change proves the informer has delivered the status event by then.
  ASSERT_TRUE(api.MergePatch(kWidgets, "ns", "a", {{"spec", {{"size", 2}}}}).ok());
  ASSERT_TRUE(WaitFor([&] { return api.Writes("patch", "widgets/status") == 2; }));
  EXPECT_EQ(r.Count("ns/a"), 2);
  m.Stop();
  EXPECT_NE(metrics.Render().find(
                "sidelog_operator_api_writes_total{verb=\"patch\",resource=\"widgets/status\"} 2"),
            std::string::npos)
      << metrics.Render();
}

TEST(Manager, ChangesOfAnotherKindAreMappedToTheKeysThatCare) {
  FakeKubeApi api;
  ASSERT_TRUE(api.Create(kWidgets, "ns", Object("Widget", "ns", "owner", {})).ok());
  Metrics metrics;
  Manager m(&api, "", &metrics);
  CountingReconciler r;
  Controller* c = m.AddController(kWidgets, &r, Options());
  std::mutex mu;
  std::vector<ObjectEvent::Type> seen;
  std::set<std::string> old_values;
  c->Watches(m.InformerFor(kGadgets), [&](const ObjectEvent& e) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(e.type);
    if (e.old_object) old_values.insert((*e.old_object)["data"].value("v", ""));
    std::vector<std::string> keys;
    for (const auto& ref : (*e.object)["metadata"].value("ownerReferences", Json::array()))
      keys.push_back((*e.object)["metadata"].value("namespace", "") + "/" + ref.value("name", ""));
    return keys;
  });
  m.Start();
  ASSERT_TRUE(WaitFor([&] { return r.Count("ns/owner") == 1; }));

  Json gadget = {{"metadata",
                  {{"name", "g"},
                   {"namespace", "ns"},
                   {"ownerReferences", {{{"kind", "Widget"}, {"name", "owner"}}}}}},
                 {"data", {{"v", "1"}}}};
  ASSERT_TRUE(api.Create(kGadgets, "ns", gadget).ok());
  ASSERT_TRUE(WaitFor([&] { return r.Count("ns/owner") == 2; }));
  ASSERT_TRUE(api.MergePatch(kGadgets, "ns", "g", {{"data", {{"v", "2"}}}}).ok());
  ASSERT_TRUE(WaitFor([&] { return r.Count("ns/owner") == 3; }));
  ASSERT_TRUE(api.Delete(kGadgets, "ns", "g").ok());
  ASSERT_TRUE(WaitFor([&] { return r.Count("ns/owner") == 4; }));
  m.Stop();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(seen,
            (std::vector<ObjectEvent::Type>{ObjectEvent::Type::kAdded, ObjectEvent::Type::kModified,
                                            ObjectEvent::Type::kDeleted}));
  EXPECT_EQ(old_values, std::set<std::string>{"1"}) << "a modification carries the old object";
}

TEST(Manager, AReconcileReadsItsOwnWriteBeforeTheWatchDeliversIt) {
  FakeKubeApi api;
  ASSERT_TRUE(api.Create(kWidgets, "ns", Object("Widget", "ns", "a", {})).ok());
  Metrics metrics;
  Manager m(&api, "", &metrics);
  Informer* widgets = m.InformerFor(kWidgets);
  m.Start();
  ASSERT_TRUE(m.WaitUntilReady(std::chrono::seconds(5)));
  api.HoldWatches(true);  // the informer's cache lags from here on
  auto written = m.client()->MergePatch(kWidgets, "ns", "a", {{"status", {{"n", 7}}}}, "status");
  ASSERT_TRUE(written.ok());
  auto got = widgets->Get("ns/a");
  ASSERT_TRUE(got);
  EXPECT_EQ((*got)["status"].value("n", 0), 7) << "Get returns the answer to our write";
  EXPECT_EQ(ResourceVersionOf(*got), ResourceVersionOf(*written));
  api.HoldWatches(false);
  m.Stop();
}

TEST(Manager, ListAndWatchHonourALabelSelector) {
  FakeKubeApi api;
  Json a = Object("Widget", "ns", "a", {});
  a["metadata"]["labels"] = {{"tier", "web"}};
  Json b = Object("Widget", "ns", "b", {});
  b["metadata"]["labels"] = {{"tier", "db"}};
  ASSERT_TRUE(api.Create(kWidgets, "ns", a).ok());
  ASSERT_TRUE(api.Create(kWidgets, "ns", b).ok());
  Metrics metrics;
  Manager m(&api, "", &metrics);
  Informer* web = m.InformerFor(kWidgets, {"tier=web", ""});
  m.Start();
  ASSERT_TRUE(m.WaitUntilReady(std::chrono::seconds(5)));
  EXPECT_EQ(web->Keys(), std::vector<std::string>{"ns/a"});
  Json c = Object("Widget", "ns", "c", {});
  c["metadata"]["labels"] = {{"tier", "web"}};
  ASSERT_TRUE(api.Create(kWidgets, "ns", c).ok());
  ASSERT_TRUE(api.Create(kWidgets, "ns", Object("Widget", "ns", "d", {})).ok());
  EXPECT_TRUE(WaitFor([&] { return web->Keys().size() == 2; }));
  EXPECT_EQ(web->Keys(), (std::vector<std::string>{"ns/a", "ns/c"}));
  m.Stop();
}

TEST(ChangesMoreThanStatus, TellsStatusUpdatesFromTheRest) {
  auto event = [](Json before, Json after) {
    return ObjectEvent{ObjectEvent::Type::kModified, std::make_shared<const Json>(before),
                       std::make_shared<const Json>(after)};
  };
  Json base = {{"metadata", {{"generation", 1}, {"resourceVersion", "5"}}}, {"spec", {}}};
  Json status = base;
  status["metadata"]["resourceVersion"] = "6";
  status["status"] = {{"events", 3}};
  EXPECT_FALSE(ChangesMoreThanStatus(event(base, status)));
  Json spec = base;
  spec["metadata"]["generation"] = 2;
  EXPECT_TRUE(ChangesMoreThanStatus(event(base, spec)));
  Json annotated = status;
  annotated["metadata"]["annotations"] = {{"sidelog.dev/rebuild", "now"}};
  EXPECT_TRUE(ChangesMoreThanStatus(event(status, annotated)));
  Json deleting = base;
  deleting["metadata"]["deletionTimestamp"] = "2026-12-02T00:00:00Z";
  EXPECT_TRUE(ChangesMoreThanStatus(event(base, deleting)));
  EXPECT_TRUE(ChangesMoreThanStatus(
      ObjectEvent{ObjectEvent::Type::kAdded, nullptr, std::make_shared<const Json>(base)}));
  // Kinds without a generation (a ConfigMap): a change of data counts.
  Json cm = {{"metadata", {{"resourceVersion", "1"}}}, {"data", {{"k", "1"}}}};
  Json cm2 = {{"metadata", {{"resourceVersion", "2"}}}, {"data", {{"k", "2"}}}};
  EXPECT_TRUE(ChangesMoreThanStatus(event(cm, cm2)));
}

}  // namespace
}  // namespace sidelog::op
