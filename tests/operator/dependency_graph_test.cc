#include "dependency_graph.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <tuple>

namespace sidelog::op {
namespace {

using Names = std::vector<std::string>;
using Cycles = std::vector<Names>;

StreamNode Single(const std::string& name) { return {name, true}; }
StreamNode Multiple(const std::string& name) { return {name, false}; }

ServiceNode Service(const std::string& name, Names produces, const Names& consumes,
                    const std::string& created = "") {
  ServiceNode node{name, created, std::move(produces), {}};
  for (const auto& stream : consumes) node.consumes.push_back({stream, {}});
  return node;
}

const ServiceResolution& Resolution(const DependencyGraph& graph, const std::string& name) {
  const ServiceResolution* r = graph.Find(name);
  EXPECT_NE(r, nullptr) << name;
  static const ServiceResolution kNone;
  return r ? *r : kNone;
}

TEST(DependencyGraph, ParsesTheThreeCyclePolicies) {
  CyclePolicy p = CyclePolicy::kWarn;
  EXPECT_TRUE(ParseCyclePolicy("allow", &p));
  EXPECT_EQ(p, CyclePolicy::kAllow);
  EXPECT_TRUE(ParseCyclePolicy("deny", &p));
  EXPECT_EQ(p, CyclePolicy::kDeny);
  EXPECT_TRUE(ParseCyclePolicy("warn", &p));
  EXPECT_EQ(p, CyclePolicy::kWarn);
  EXPECT_FALSE(ParseCyclePolicy("Deny", &p));
  EXPECT_FALSE(ParseCyclePolicy("", &p));
  EXPECT_EQ(p, CyclePolicy::kWarn) << "a refused text leaves the policy alone";
  EXPECT_STREQ(CyclePolicyName(CyclePolicy::kDeny), "deny");
}

TEST(DependencyGraph, MissingStreamsNameEveryListedStreamWithoutAnEventStream) {
  DependencyGraph graph({Single("orders")},
                        {Service("billing", {"payments", "orders", "refunds"},
                                 {"orders", "customers", "payments", "customers"})});
  EXPECT_EQ(Resolution(graph, "billing").missing_streams,
            (Names{"customers", "payments", "refunds"}));
  EXPECT_TRUE(graph.ProducersOf("payments").empty()) << "a missing stream has no producers";
  EXPECT_FALSE(graph.HasStream("payments"));
  EXPECT_TRUE(graph.HasStream("orders"));
}

TEST(DependencyGraph, TheOldestProducerKeepsASingleStream) {
  DependencyGraph graph({Single("orders")},
                        {Service("newer", {"orders"}, {}, "2026-03-01T10:00:00Z"),
                         Service("older", {"orders"}, {}, "2026-03-01T09:00:00Z"),
                         Service("newest", {"orders"}, {}, "2026-03-02T00:00:00Z")});
  EXPECT_EQ(graph.ProducersOf("orders"), Names{"older"});
  EXPECT_TRUE(Resolution(graph, "older").conflicts.empty());
  EXPECT_EQ(Resolution(graph, "newer").conflicts,
            (std::vector<ProducerConflict>{{"orders", "older"}}));
  EXPECT_EQ(Resolution(graph, "newest").conflicts,
            (std::vector<ProducerConflict>{{"orders", "older"}}));
}

TEST(DependencyGraph, CreationTimesCompareAsTimesNotAsText) {
  // 09:30+01:00 is 08:30Z: older than 09:00Z, though it sorts after it as text.
  DependencyGraph graph({Single("orders")},
                        {Service("a", {"orders"}, {}, "2026-03-01T09:00:00Z"),
                         Service("b", {"orders"}, {}, "2026-03-01T09:30:00+01:00")});
  EXPECT_EQ(graph.ProducersOf("orders"), Names{"b"});
  EXPECT_EQ(Resolution(graph, "a").conflicts, (std::vector<ProducerConflict>{{"orders", "b"}}));
}

TEST(DependencyGraph, EqualCreationTimesGoToTheSmallerName) {
  DependencyGraph graph({Single("orders")},
                        {Service("zeta", {"orders"}, {}, "2026-03-01T09:00:00Z"),
                         Service("alpha", {"orders"}, {}, "2026-03-01T09:00:00Z")});
  EXPECT_EQ(graph.ProducersOf("orders"), Names{"alpha"});
  EXPECT_EQ(Resolution(graph, "zeta").conflicts,
            (std::vector<ProducerConflict>{{"orders", "alpha"}}));
}

TEST(DependencyGraph, AServiceWithoutACreationTimeLosesToOneWithIt) {
  DependencyGraph graph(
      {Single("orders")},
      {Service("aaa", {"orders"}, {}, ""), Service("bbb", {"orders"}, {}, "not a time"),
       Service("zzz", {"orders"}, {}, "2030-01-01T00:00:00Z")});
  EXPECT_EQ(graph.ProducersOf("orders"), Names{"zzz"});
  EXPECT_EQ(Resolution(graph, "aaa").conflicts, (std::vector<ProducerConflict>{{"orders", "zzz"}}));
  EXPECT_EQ(Resolution(graph, "bbb").conflicts, (std::vector<ProducerConflict>{{"orders", "zzz"}}));
}

TEST(DependencyGraph, AMultipleStreamHasEveryListingServiceAsProducerAndNoConflict) {
  DependencyGraph graph({Multiple("audit")}, {Service("b", {"audit"}, {}, "2026-01-01T00:00:00Z"),
                                              Service("a", {"audit"}, {}, "2026-02-01T00:00:00Z"),
                                              Service("reader", {}, {"audit"})});
  EXPECT_EQ(graph.ProducersOf("audit"), (Names{"a", "b"}));
  EXPECT_TRUE(Resolution(graph, "a").conflicts.empty());
  EXPECT_TRUE(Resolution(graph, "b").conflicts.empty());
  EXPECT_EQ(Resolution(graph, "reader").dependencies,
            (std::vector<Dependency>{{"a", {"audit"}}, {"b", {"audit"}}}));
}

TEST(DependencyGraph, ConflictsAreSortedByStream) {
  DependencyGraph graph({Single("b-stream"), Single("a-stream")},
                        {Service("owner", {"b-stream", "a-stream"}, {}, "2026-01-01T00:00:00Z"),
                         Service("late", {"b-stream", "a-stream"}, {}, "2026-06-01T00:00:00Z")});
  EXPECT_EQ(Resolution(graph, "late").conflicts,
            (std::vector<ProducerConflict>{{"a-stream", "owner"}, {"b-stream", "owner"}}));
}

TEST(DependencyGraph, ConsumersDependOnTheOwnerOfASingleStreamOnly) {
  DependencyGraph graph({Single("orders")},
                        {Service("orders", {"orders"}, {}, "2026-01-01T00:00:00Z"),
                         Service("impostor", {"orders"}, {}, "2026-02-01T00:00:00Z"),
                         Service("billing", {}, {"orders"})});
  EXPECT_EQ(Resolution(graph, "billing").dependencies,
            (std::vector<Dependency>{{"orders", {"orders"}}}));
  EXPECT_TRUE(Resolution(graph, "impostor").dependents.empty());
}

TEST(DependencyGraph, AServiceThatOnlyConsumesHasDependenciesAndNoDependents) {
  DependencyGraph graph({Single("orders"), Single("customers")},
                        {Service("orders", {"orders", "customers"}, {}),
                         Service("report", {}, {"customers", "orders"})});
  const ServiceResolution& report = Resolution(graph, "report");
  EXPECT_EQ(report.dependencies, (std::vector<Dependency>{{"orders", {"customers", "orders"}}}));
  EXPECT_TRUE(report.dependents.empty());
  EXPECT_TRUE(report.missing_streams.empty());
  EXPECT_TRUE(report.conflicts.empty());
  EXPECT_TRUE(report.cycles.empty());
  EXPECT_TRUE(graph.cycles().empty());
}

TEST(DependencyGraph, AConsumedStreamWithoutProducerMakesNoDependency) {
  DependencyGraph graph({Single("imports")}, {Service("reader", {}, {"imports"})});
  EXPECT_TRUE(Resolution(graph, "reader").dependencies.empty());
  EXPECT_TRUE(Resolution(graph, "reader").missing_streams.empty());
  EXPECT_TRUE(graph.ProducersOf("imports").empty());
}

TEST(DependencyGraph, DependentsAreTheReverseOfDependencies) {
  DependencyGraph graph({Single("a"), Single("b"), Multiple("c")},
                        {Service("x", {"a"}, {"b", "c"}), Service("y", {"b", "c"}, {"a"}),
                         Service("z", {"c"}, {"a", "b"})});
  std::set<std::tuple<std::string, std::string, Names>> forward, backward;
  for (const auto& [name, r] : graph.services()) {
    for (const auto& d : r.dependencies) forward.insert({name, d.service, d.streams});
    for (const auto& d : r.dependents) backward.insert({d.service, name, d.streams});
    EXPECT_TRUE(std::is_sorted(r.dependencies.begin(), r.dependencies.end(),
                               [](auto& l, auto& r) { return l.service < r.service; }));
    EXPECT_TRUE(std::is_sorted(r.dependents.begin(), r.dependents.end(),
                               [](auto& l, auto& r) { return l.service < r.service; }));
  }
  EXPECT_EQ(forward, backward);
  EXPECT_EQ(Resolution(graph, "x").dependencies,
            (std::vector<Dependency>{{"y", {"b", "c"}}, {"z", {"c"}}}));
  EXPECT_EQ(Resolution(graph, "x").dependents,
            (std::vector<Dependency>{{"y", {"a"}}, {"z", {"a"}}}));
}

TEST(DependencyGraph, TwoServicesConsumingEachOtherFormACycleOfTwo) {
  DependencyGraph graph(
      {Single("orders"), Single("payments")},
      {Service("orders", {"orders"}, {"payments"}), Service("billing", {"payments"}, {"orders"})});
  EXPECT_EQ(graph.cycles(), (Cycles{{"billing", "orders"}}));
  EXPECT_EQ(Resolution(graph, "billing").cycles, (Cycles{{"billing", "orders"}}));
  EXPECT_EQ(Resolution(graph, "orders").cycles, (Cycles{{"orders", "billing"}}));
  EXPECT_EQ(DependencyGraph::CycleText(graph.cycles()[0]), "billing -> orders -> billing");
  EXPECT_FALSE(graph.cycles_truncated());
}

TEST(DependencyGraph, ACycleOfThreeFollowsDependenciesAndStartsAtEachMember) {
  // c depends on b (through sb), b on a, a on c.
  DependencyGraph graph({Single("sa"), Single("sb"), Single("sc")},
                        {Service("c", {"sc"}, {"sb"}), Service("a", {"sa"}, {"sc"}),
                         Service("b", {"sb"}, {"sa"}), Service("outside", {}, {"sa"})});
  EXPECT_EQ(graph.cycles(), (Cycles{{"a", "c", "b"}}));
  EXPECT_EQ(Resolution(graph, "a").cycles, (Cycles{{"a", "c", "b"}}));
  EXPECT_EQ(Resolution(graph, "b").cycles, (Cycles{{"b", "a", "c"}}));
  EXPECT_EQ(Resolution(graph, "c").cycles, (Cycles{{"c", "b", "a"}}));
  EXPECT_TRUE(Resolution(graph, "outside").cycles.empty());
  EXPECT_EQ(DependencyGraph::CycleText({"a", "c", "b"}), "a -> c -> b -> a");
}

TEST(DependencyGraph, OverlappingCyclesAreEachListedOnce) {
  // a <-> b and a -> b -> c -> a: two elementary cycles through a and b.
  DependencyGraph graph({Single("sa"), Single("sb"), Single("sc")},
                        {Service("a", {"sa"}, {"sb"}), Service("b", {"sb"}, {"sa", "sc"}),
                         Service("c", {"sc"}, {"sa"})});
  EXPECT_EQ(graph.cycles(), (Cycles{{"a", "b"}, {"a", "b", "c"}}));
  EXPECT_EQ(Resolution(graph, "b").cycles, (Cycles{{"b", "a"}, {"b", "c", "a"}}));
  EXPECT_EQ(Resolution(graph, "c").cycles, (Cycles{{"c", "a", "b"}}));
}

TEST(DependencyGraph, AServiceConsumingWhatItProducesIsACycleOfOne) {
  DependencyGraph graph({Single("orders")}, {Service("orders", {"orders"}, {"orders"})});
  EXPECT_EQ(graph.cycles(), (Cycles{{"orders"}}));
  const ServiceResolution& r = Resolution(graph, "orders");
  EXPECT_EQ(r.cycles, (Cycles{{"orders"}}));
  EXPECT_EQ(r.dependencies, (std::vector<Dependency>{{"orders", {"orders"}}}));
  EXPECT_EQ(r.dependents, (std::vector<Dependency>{{"orders", {"orders"}}}));
  EXPECT_EQ(DependencyGraph::CycleText({"orders"}), "orders -> orders");
}

TEST(DependencyGraph, RepeatedEntriesAreMergedAndTheFirstOfANameIsKept) {
  ServiceNode reader{"reader", "", {}, {{"orders", {"B", "A"}}, {"orders", {"A", "C"}}}};
  DependencyGraph graph(
      {Single("orders"), Multiple("orders")},
      {Service("w", {"orders", "orders"}, {}), reader, Service("reader", {"orders"}, {})});
  EXPECT_TRUE(graph.stream_nodes().at("orders").single_producer);
  const ServiceNode& kept = graph.service_nodes().at("reader");
  EXPECT_TRUE(kept.produces.empty());
  ASSERT_EQ(kept.consumes.size(), 1u);
  EXPECT_EQ(kept.consumes[0].types, (Names{"B", "A", "C"}));
  EXPECT_EQ(graph.service_nodes().at("w").produces, Names{"orders"});
  EXPECT_TRUE(Resolution(graph, "w").conflicts.empty());
}

TEST(DependencyGraph, FromObjectsReadsTheApiServersJson) {
  std::vector<Json> streams = {
      Json::parse(R"({"apiVersion": "sidelog.dev/v1alpha1", "kind": "EventStream",
        "metadata": {"name": "orders", "namespace": "shop", "uid": "1",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"replicas": 1, "producerPolicy": "Single"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}})"),
      Json::parse(R"({"apiVersion": "sidelog.dev/v1alpha1", "kind": "EventStream",
        "metadata": {"name": "audit", "namespace": "shop"},
        "spec": {"producerPolicy": "Multiple"}})"),
      Json::parse(R"({"apiVersion": "sidelog.dev/v1alpha1", "kind": "EventStream",
        "metadata": {"name": "customers", "namespace": "shop"}, "spec": {}})"),
  };
  std::vector<Json> services = {
      Json::parse(R"({"apiVersion": "sidelog.dev/v1alpha1", "kind": "EventService",
        "metadata": {"name": "orders", "namespace": "shop",
                     "creationTimestamp": "2026-01-02T00:00:00Z", "generation": 3},
        "spec": {"selector": {"matchLabels": {"app": "orders"}},
                 "produces": ["orders", "customers", "audit"]}})"),
      Json::parse(R"({"apiVersion": "sidelog.dev/v1alpha1", "kind": "EventService",
        "metadata": {"name": "billing", "namespace": "shop",
                     "creationTimestamp": "2026-01-03T00:00:00Z"},
        "spec": {"produces": ["payments", "audit", 7],
                 "consumes": [{"stream": "orders", "types": ["OrderPlaced", "OrderCancelled"],
                               "deliver": {"path": "/events", "port": 8080}},
                              {"stream": "customers"}, {"types": ["X"]}]}})"),
      Json::parse(R"({"apiVersion": "sidelog.dev/v1alpha1", "kind": "EventService",
        "metadata": {"name": "shipping", "namespace": "shop",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"produces": ["customers"], "consumes": "not a list"}})"),
  };
  DependencyGraph graph = DependencyGraph::FromObjects(streams, services);

  EXPECT_FALSE(graph.stream_nodes().at("audit").single_producer);
  EXPECT_TRUE(graph.stream_nodes().at("customers").single_producer) << "Single is the default";
  const ServiceNode& billing = graph.service_nodes().at("billing");
  EXPECT_EQ(billing.creation_timestamp, "2026-01-03T00:00:00Z");
  EXPECT_EQ(billing.produces, (Names{"audit", "payments"}));
  ASSERT_EQ(billing.consumes.size(), 2u);
  EXPECT_EQ(billing.consumes[0].stream, "customers");
  EXPECT_TRUE(billing.consumes[0].types.empty());
  EXPECT_EQ(billing.consumes[1].types, (Names{"OrderPlaced", "OrderCancelled"}));

  EXPECT_EQ(Resolution(graph, "billing").missing_streams, Names{"payments"});
  EXPECT_EQ(Resolution(graph, "orders").conflicts,
            (std::vector<ProducerConflict>{{"customers", "shipping"}}))
      << "shipping was created first";
  EXPECT_EQ(Resolution(graph, "billing").dependencies,
            (std::vector<Dependency>{{"orders", {"orders"}}, {"shipping", {"customers"}}}));
  EXPECT_EQ(graph.ProducersOf("audit"), (Names{"billing", "orders"}));
  EXPECT_TRUE(graph.service_nodes().at("shipping").consumes.empty());
  EXPECT_EQ(graph.Find("nobody"), nullptr);
}

TEST(DependencyGraph, TwoHundredServicesInAChainResolveWithoutCycles) {
  // s000 produces t000; each s<i> consumes t<i-1> and produces t<i>.
  std::vector<StreamNode> streams;
  std::vector<ServiceNode> services;
  auto name = [](const char* prefix, int i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%s%03d", prefix, i);
    return std::string(buf);
  };
  for (int i = 0; i < 200; ++i) {
    streams.push_back(Single(name("t", i)));
    services.push_back(
        Service(name("s", i), {name("t", i)}, i > 0 ? Names{name("t", i - 1)} : Names{}));
  }
  DependencyGraph graph(streams, services);
  EXPECT_TRUE(graph.cycles().empty());
  EXPECT_EQ(graph.services().size(), 200u);
  EXPECT_EQ(Resolution(graph, "s100").dependencies, (std::vector<Dependency>{{"s099", {"t099"}}}));
  EXPECT_EQ(Resolution(graph, "s100").dependents, (std::vector<Dependency>{{"s101", {"t100"}}}));
  EXPECT_TRUE(Resolution(graph, "s000").dependencies.empty());
  EXPECT_TRUE(Resolution(graph, "s199").dependents.empty());
}

TEST(DependencyGraph, TwoHundredServicesClosedIntoARingAreOneCycle) {
  std::vector<StreamNode> streams;
  std::vector<ServiceNode> services;
  for (int i = 0; i < 200; ++i) {
    streams.push_back(Single("t" + std::to_string(1000 + i)));
    services.push_back(Service("s" + std::to_string(1000 + i), {"t" + std::to_string(1000 + i)},
                               {"t" + std::to_string(1000 + (i + 1) % 200)}));
  }
  DependencyGraph graph(streams, services);
  ASSERT_EQ(graph.cycles().size(), 1u);
  EXPECT_EQ(graph.cycles()[0].size(), 200u);
  EXPECT_EQ(graph.cycles()[0].front(), "s1000");
  EXPECT_EQ(graph.cycles()[0][1], "s1001");
  EXPECT_EQ(Resolution(graph, "s1150").cycles[0].front(), "s1150");
}

TEST(DependencyGraph, TwoHundredServicesInAStarResolve) {
  // hub produces hub-events and every spoke consumes it; each spoke produces its own stream,
  // which the collector consumes.
  std::vector<StreamNode> streams{Single("hub-events")};
  std::vector<ServiceNode> services{Service("hub", {"hub-events"}, {})};
  Names spoke_streams;
  for (int i = 0; i < 200; ++i) {
    std::string spoke = "spoke-" + std::to_string(i);
    streams.push_back(Single(spoke));
    services.push_back(Service(spoke, {spoke}, {"hub-events"}));
    spoke_streams.push_back(spoke);
  }
  services.push_back(Service("collector", {}, spoke_streams));
  DependencyGraph graph(streams, services);
  EXPECT_TRUE(graph.cycles().empty());
  EXPECT_EQ(Resolution(graph, "hub").dependents.size(), 200u);
  EXPECT_EQ(Resolution(graph, "collector").dependencies.size(), 200u);
  EXPECT_EQ(Resolution(graph, "spoke-7").dependencies,
            (std::vector<Dependency>{{"hub", {"hub-events"}}}));
}

TEST(DependencyGraph, ADenseGraphStopsAtTheCycleLimit) {
  // 30 services that all consume one another's streams: far more than kMaxCycles cycles.
  std::vector<StreamNode> streams;
  std::vector<ServiceNode> services;
  Names all;
  for (int i = 0; i < 30; ++i) all.push_back("t" + std::to_string(10 + i));
  for (int i = 0; i < 30; ++i) {
    streams.push_back(Single(all[i]));
    Names others;
    for (int j = 0; j < 30; ++j) {
      if (j != i) others.push_back(all[j]);
    }
    services.push_back(Service("s" + std::to_string(10 + i), {all[i]}, others));
  }
  DependencyGraph graph(streams, services);
  EXPECT_TRUE(graph.cycles_truncated());
  EXPECT_EQ(graph.cycles().size(), DependencyGraph::kMaxCycles);
  for (const auto& cycle : graph.cycles()) {
    EXPECT_EQ(cycle.front(), "s10") << "the cycles through the smallest name come first";
    EXPECT_EQ(std::set<std::string>(cycle.begin(), cycle.end()).size(), cycle.size())
        << "elementary";
  }
  EXPECT_TRUE(std::is_sorted(graph.cycles().begin(), graph.cycles().end()));
}

}  // namespace
}  // namespace sidelog::op
