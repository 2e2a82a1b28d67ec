// The sidecar injection of pods: a corpus of pods as users write them, each patch applied the way
// the API server applies it (RFC 6902), and every reason a labelled pod is refused.
#include <gtest/gtest.h>

#include "operator_test_util.h"
#include "sidecar_config.h"
#include "sidecar_injector.h"
#include "sidecar_process.h"

namespace sidelog::op {
namespace {

Json Service(const std::string& name, Json spec, Json status) {
  return {{"apiVersion", "sidelog.dev/v1alpha1"},
          {"kind", "EventService"},
          {"metadata", {{"name", name}, {"namespace", "shop"}}},
          {"spec", std::move(spec)},
          {"status", std::move(status)}};
}

Json ReadyStatus(const std::string& name, const std::string& hash) {
  return {{"conditions", {{{"type", "Ready"}, {"status", "True"}, {"reason", "Rendered"}}}},
          {"sidecarConfig", {{"configMap", "sidelog-" + name}, {"hash", hash}}}};
}

class SidecarInjectorTest : public ::testing::Test {
 protected:
  SidecarInjectorTest() {
    Add(Service("orders", {{"produces", {"orders"}}}, ReadyStatus("orders", "h-orders")));
    Add(Service(
        "billing",
        {{"selector", {{"matchLabels", {{"app", "billing"}}}}},
         {"sidecar",
          {{"port", 4390},
           {"image", "registry.example.com/sidecar:custom"},
           {"resources", {{"requests", {{"cpu", "50m"}, {"memory", "64Mi"}}}}},
           {"storage", {{"type", "volumeClaim"}, {"size", "2Gi"}, {"storageClassName", "fast"}}}}}},
        ReadyStatus("billing", "h-billing")));
    Add(Service("audit",
                {{"selector",
                  {{"matchExpressions",
                    {{{"key", "tier"}, {"operator", "In"}, {"values", {"backend"}}}}}}}},
                ReadyStatus("audit", "h-audit")));
    Add(Service("shipping", {{"consumes", {"orders"}}},
                {{"conditions",
                  {{{"type", "Ready"},
                    {"status", "False"},
                    {"reason", "StreamNotFound"},
                    {"message", "stream parcels does not exist"}}}}}));
    Add(Service("fresh", Json::object(), Json::object()));
    options_.sidecar_image = "docker.io/sidelog/sidecar:1.2.3";
    options_.operator_version = "1.2.3";
  }

  void Add(Json service) { services_.push_back(std::make_shared<const Json>(std::move(service))); }

  static Json Pod(Json labels, Json spec) {
    labels["sidelog.dev/inject"] = "true";
    return {{"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata", {{"name", "p"}, {"namespace", "shop"}, {"labels", labels}}},
            {"spec", std::move(spec)}};
  }
  static Json App(const std::string& name = "app") {
    return {{"name", name}, {"image", "registry.example.com/app:1"}};
  }
  static Json Spec(Json containers = Json::array({App()})) {
    return {{"containers", std::move(containers)}};
  }

  AdmissionDecision Decide(const Json& pod) {
    return InjectSidecar(pod, "shop", "p", services_, options_);
  }
  // The pod as the API server stores it after the patch; fails the test when not allowed or
  // when the patch does not apply.
  Json Injected(const Json& pod) {
    AdmissionDecision d = Decide(pod);
    EXPECT_TRUE(d.allowed) << d.message;
    try {
      return pod.patch(d.patch);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "the patch does not apply: " << e.what() << "\n" << d.patch.dump(2);
      return pod;
    }
  }
  std::string Denial(const Json& pod) {
    AdmissionDecision d = Decide(pod);
    EXPECT_FALSE(d.allowed);
    EXPECT_TRUE(d.patch.empty());
    return d.message;
  }
  static const Json* Find(const Json& list, const std::string& name) {
    for (const auto& item : list) {
      if (item.value("name", "") == name) return &item;
    }
    return nullptr;
  }
  static std::string Env(const Json& container, const std::string& name) {
    const Json env = container.value("env", Json::array());
    const Json* e = Find(env, name);
    return e ? e->value("value", "") : "";
  }

  std::vector<std::shared_ptr<const Json>> services_;
  InjectorOptions options_;
};

TEST_F(SidecarInjectorTest, ALabelledPodGetsTheNativeSidecarFirstWithItsProbesAndVolumes) {
  Json pod = Injected(Pod({{"sidelog.dev/service", "orders"}}, Spec()));
  const Json& spec = pod["spec"];
  ASSERT_EQ(spec["initContainers"].size(), 1u);
  const Json& sidecar = spec["initContainers"][0];
  EXPECT_EQ(sidecar["name"], "sidelog");
  EXPECT_EQ(sidecar["restartPolicy"], "Always");
  EXPECT_EQ(sidecar["image"], "docker.io/sidelog/sidecar:1.2.3");
  EXPECT_EQ(sidecar["args"], Json({"--config", "/etc/sidelog/config/sidecar.yaml"}));
  EXPECT_EQ(sidecar["startupProbe"]["httpGet"]["path"], "/readyz");
  EXPECT_EQ(sidecar["startupProbe"]["httpGet"]["port"], 4381);
  EXPECT_EQ(sidecar["readinessProbe"]["httpGet"]["path"], "/readyz");
  EXPECT_EQ(sidecar["livenessProbe"]["httpGet"]["path"], "/livez");
  const Json& security = sidecar["securityContext"];
  EXPECT_EQ(security["runAsNonRoot"], true);
  EXPECT_EQ(security["allowPrivilegeEscalation"], false);
  EXPECT_EQ(security["readOnlyRootFilesystem"], true);
  EXPECT_EQ(security["capabilities"]["drop"], Json({"ALL"}));
  EXPECT_EQ(security["seccompProfile"]["type"], "RuntimeDefault");
  EXPECT_FALSE(sidecar.contains("resources"));
  ASSERT_NE(Find(sidecar["volumeMounts"], "sidelog-config"), nullptr);
  EXPECT_EQ(Find(sidecar["volumeMounts"], "sidelog-data")->value("mountPath", ""),
            "/var/lib/sidelog");

  EXPECT_EQ(Find(spec["volumes"], "sidelog-config")->at("configMap")["name"], "sidelog-orders");
  EXPECT_EQ(Find(spec["volumes"], "sidelog-data")->at("emptyDir"), Json::object());
  EXPECT_EQ(Env(spec["containers"][0], "SIDELOG_URL"), "http://127.0.0.1:4380");
  const Json& annotations = pod["metadata"]["annotations"];
  EXPECT_EQ(annotations["sidelog.dev/config-hash"], "h-orders");
  EXPECT_EQ(annotations["sidelog.dev/injected"], "1.2.3");
}

TEST_F(SidecarInjectorTest, ThePodsInitContainersComeAfterTheSidecarAndGetTheUrl) {
  Json spec = Spec();
  spec["initContainers"] = Json::array({App("migrate")});
  Json pod = Injected(Pod({{"sidelog.dev/service", "orders"}}, spec));
  ASSERT_EQ(pod["spec"]["initContainers"].size(), 2u);
  EXPECT_EQ(pod["spec"]["initContainers"][0]["name"], "sidelog");
  EXPECT_EQ(pod["spec"]["initContainers"][1]["name"], "migrate");
  EXPECT_EQ(Env(pod["spec"]["initContainers"][1], "SIDELOG_URL"), "http://127.0.0.1:4380");
  EXPECT_EQ(Env(pod["spec"]["initContainers"][0], "SIDELOG_URL"), "");
}

TEST_F(SidecarInjectorTest, APodSelectedByOneServiceGetsItsLabelPortImageResourcesAndClaim) {
  Json pod = Injected(Pod({{"app", "billing"}}, Spec()));
  EXPECT_EQ(pod["metadata"]["labels"]["sidelog.dev/service"], "billing");
  const Json& sidecar = pod["spec"]["initContainers"][0];
  EXPECT_EQ(sidecar["image"], "registry.example.com/sidecar:custom");
  EXPECT_EQ(sidecar["resources"]["requests"]["memory"], "64Mi");
  EXPECT_EQ(Env(pod["spec"]["containers"][0], "SIDELOG_URL"), "http://127.0.0.1:4390");
  const Json* data = Find(pod["spec"]["volumes"], "sidelog-data");
  ASSERT_NE(data, nullptr);
  const Json& claim = data->at("ephemeral")["volumeClaimTemplate"]["spec"];
  EXPECT_EQ(claim["resources"]["requests"]["storage"], "2Gi");
  EXPECT_EQ(claim["storageClassName"], "fast");
  EXPECT_EQ(claim["accessModes"], Json({"ReadWriteOnce"}));
}

TEST_F(SidecarInjectorTest, WhatThePodAlreadyHasIsKeptAndAddedTo) {
  Json containers = Json::array({App("app"), App("worker"), App("proxy")});
  containers[0]["env"] = Json::array({{{"name", "SIDELOG_URL"}, {"value", "http://other:1"}}});
  containers[1]["env"] = Json::array({{{"name", "MODE"}, {"value", "batch"}}});
  Json spec = Spec(containers);
  spec["volumes"] = Json::array({{{"name", "cache"}, {"emptyDir", Json::object()}}});
  Json pod = Pod({{"sidelog.dev/service", "orders"}}, spec);
  pod["metadata"]["annotations"] = {{"team", "shop"}};
  Json injected = Injected(pod);
  const Json& c = injected["spec"]["containers"];
  EXPECT_EQ(Env(c[0], "SIDELOG_URL"), "http://other:1");  // set by the user: kept
  EXPECT_EQ(Env(c[1], "MODE"), "batch");
  EXPECT_EQ(Env(c[1], "SIDELOG_URL"), "http://127.0.0.1:4380");
  EXPECT_EQ(Env(c[2], "SIDELOG_URL"), "http://127.0.0.1:4380");
  EXPECT_EQ(injected["spec"]["volumes"].size(), 3u);
  EXPECT_EQ(injected["spec"]["volumes"][0]["name"], "cache");
  EXPECT_EQ(injected["metadata"]["annotations"]["team"], "shop");
  EXPECT_EQ(injected["metadata"]["annotations"]["sidelog.dev/injected"], "1.2.3");
}

TEST_F(SidecarInjectorTest, AReinvocationChangesNothingButANewContainersUrl) {
  Json once = Injected(Pod({{"sidelog.dev/service", "orders"}}, Spec()));
  AdmissionDecision again = Decide(once);
  EXPECT_TRUE(again.allowed);
  EXPECT_TRUE(again.patch.empty()) << again.patch.dump();
  once["spec"]["containers"].push_back(App("added-later"));
  Json twice = Injected(once);
  EXPECT_EQ(twice["spec"]["initContainers"].size(), 1u);
  EXPECT_EQ(Env(twice["spec"]["containers"][1], "SIDELOG_URL"), "http://127.0.0.1:4380");
}

TEST_F(SidecarInjectorTest, NatsSecretsAreMountedWhereTheRenderedConfigNamesThem) {
  options_.nats_creds_secret = "nats-creds";
  options_.nats_tls_secret = "nats-tls";
  options_.nats_creds_dir = "/etc/sidelog/nats/creds";
  options_.nats_tls_dir = "/etc/sidelog/nats/tls";
  Json pod = Injected(Pod({{"sidelog.dev/service", "orders"}}, Spec()));
  EXPECT_EQ(Find(pod["spec"]["volumes"], "sidelog-nats-creds")->at("secret")["secretName"],
            "nats-creds");
  EXPECT_EQ(Find(pod["spec"]["volumes"], "sidelog-nats-tls")->at("secret")["secretName"],
            "nats-tls");
  const Json& mounts = pod["spec"]["initContainers"][0]["volumeMounts"];
  EXPECT_EQ(Find(mounts, "sidelog-nats-creds")->value("mountPath", ""), "/etc/sidelog/nats/creds");
  EXPECT_EQ(Find(mounts, "sidelog-nats-tls")->value("mountPath", ""), "/etc/sidelog/nats/tls");
}

TEST_F(SidecarInjectorTest, TheAppPortAnnotationReachesTheSidecarAndABadOneIsRefused) {
  Json pod = Pod({{"app", "billing"}}, Spec());
  pod["metadata"]["annotations"] = {{"sidelog.dev/app-port", "8081"}};
  Json injected = Injected(pod);
  const Json* sidecar = Find(injected["spec"]["initContainers"], "sidelog");
  ASSERT_NE(sidecar, nullptr);
  EXPECT_EQ(Env(*sidecar, "SIDELOG_APP_PORT"), "8081");
  EXPECT_EQ(Env(*Find(injected["spec"]["containers"], "app"), "SIDELOG_APP_PORT"), "");
  // Without the annotation the sidecar takes spec.appPort from its config.
  Json plain = Injected(Pod({{"app", "billing"}}, Spec()));
  EXPECT_EQ(Env(*Find(plain["spec"]["initContainers"], "sidelog"), "SIDELOG_APP_PORT"), "");
  for (const char* bad : {"http", "0", "65536", "080", ""}) {
    pod["metadata"]["annotations"]["sidelog.dev/app-port"] = bad;
    const std::string why = Denial(pod);
    EXPECT_NE(why.find("sidelog.dev/app-port"), std::string::npos) << why;
    EXPECT_NE(why.find("1 to 65535"), std::string::npos) << why;
  }
}

TEST_F(SidecarInjectorTest, APodNoServiceSelectsIsRefusedNamingTheServicesHere) {
  std::string m = Denial(Pod({{"app", "web"}}, Spec()));
  EXPECT_NE(m.find("no EventService of namespace shop selects pod shop/p"), std::string::npos) << m;
  EXPECT_NE(m.find("audit, billing, fresh, orders, shipping"), std::string::npos) << m;
}

TEST_F(SidecarInjectorTest, AMisspelledServiceLabelIsRefusedWithTheCandidates) {
  std::string m = Denial(Pod({{"sidelog.dev/service", "orderz"}}, Spec()));
  EXPECT_NE(m.find("has no EventService orderz"), std::string::npos) << m;
  EXPECT_NE(m.find("billing"), std::string::npos) << m;
}

TEST_F(SidecarInjectorTest, APodTwoSelectorsMatchIsRefusedUntilItChooses) {
  Json pod = Pod({{"app", "billing"}, {"tier", "backend"}}, Spec());
  std::string m = Denial(pod);
  EXPECT_NE(m.find("selected by EventServices audit, billing"), std::string::npos) << m;
  pod["metadata"]["labels"]["sidelog.dev/service"] = "audit";
  EXPECT_EQ(Env(Injected(pod)["spec"]["containers"][0], "SIDELOG_URL"), "http://127.0.0.1:4380");
}

TEST_F(SidecarInjectorTest, AServiceThatIsNotReadyRefusesItsPodsWithItsReason) {
  std::string m = Denial(Pod({{"sidelog.dev/service", "shipping"}}, Spec()));
  EXPECT_NE(m.find("EventService shop/shipping is not Ready"), std::string::npos) << m;
  EXPECT_NE(m.find("StreamNotFound: stream parcels does not exist"), std::string::npos) << m;
  std::string fresh = Denial(Pod({{"sidelog.dev/service", "fresh"}}, Spec()));
  EXPECT_NE(fresh.find("not reconciled it yet"), std::string::npos) << fresh;
}

TEST_F(SidecarInjectorTest, WhatWouldClashWithTheSidecarIsRefused) {
  Json host = Spec();
  host["hostNetwork"] = true;
  EXPECT_NE(Denial(Pod({{"sidelog.dev/service", "orders"}}, host)).find("hostNetwork"),
            std::string::npos);

  for (int port : {4380, 4381}) {
    Json app = App();
    app["ports"] = Json::array({{{"containerPort", port}}});
    std::string m = Denial(Pod({{"sidelog.dev/service", "orders"}}, Spec(Json::array({app}))));
    EXPECT_NE(m.find("container app uses port " + std::to_string(port)), std::string::npos) << m;
  }
  Json app = App();
  app["ports"] = Json::array({{{"containerPort", 4380}}});  // billing's API is on 4390
  Injected(Pod({{"sidelog.dev/service", "billing"}}, Spec(Json::array({app}))));

  Json volume = Spec();
  volume["volumes"] = Json::array({{{"name", "sidelog-data"}, {"emptyDir", Json::object()}}});
  EXPECT_NE(Denial(Pod({{"sidelog.dev/service", "orders"}}, volume))
                .find("has a volume named sidelog-data"),
            std::string::npos);

  std::string named =
      Denial(Pod({{"sidelog.dev/service", "orders"}}, Spec(Json::array({App("sidelog")}))));
  EXPECT_NE(named.find("app container named sidelog"), std::string::npos) << named;

  Json own = Spec();
  own["initContainers"] = Json::array({App("sidelog")});
  std::string declared = Denial(Pod({{"sidelog.dev/service", "orders"}}, own));
  EXPECT_NE(declared.find("declares an init container named sidelog"), std::string::npos)
      << declared;
}

// The patch's command line, config mount, env and probes, run with the real sidecar binary:
// each mount path is a directory of the test, the config is the one the operator renders.
TEST_F(SidecarInjectorTest, TheInjectedSidecarRunsAsPatchedWithTheRealBinary) {
  const int api_port = sidelog::testing::FreePort();
  const int health_port = sidelog::testing::FreePort();
  Json service = Service("orders", {{"produces", {"orders"}}, {"sidecar", {{"port", api_port}}}},
                         ReadyStatus("orders", "h"));
  services_ = {std::make_shared<const Json>(service)};
  Json pod = Injected(Pod({{"sidelog.dev/service", "orders"}}, Spec()));
  const Json& sidecar = pod["spec"]["initContainers"][0];

  char tmpl[] = "/tmp/sidelog-inject.XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  std::map<std::string, std::string> mounts;  // container path -> test directory
  for (const auto& m : sidecar["volumeMounts"]) {
    mounts[m["mountPath"]] = dir + "/" + m["name"].get<std::string>();
    std::filesystem::create_directories(mounts[m["mountPath"]]);
  }
  auto host_path = [&mounts](const std::string& path) {
    for (const auto& [from, to] : mounts) {
      if (path.rfind(from + "/", 0) == 0 || path == from) return to + path.substr(from.size());
    }
    return path;
  };
  // The config the operator renders for this service, where the patch says to read it, with
  // the health listener on a free loopback port instead of the pod's 0.0.0.0:4381.
  SidecarSettings settings;
  settings.data_dir = host_path(settings.data_dir);
  settings.health_listen = "127.0.0.1:" + std::to_string(health_port);
  ASSERT_EQ(sidecar["args"][0], "--config");
  const std::string config = host_path(sidecar["args"][1]);
  ASSERT_NE(config, sidecar["args"][1].get<std::string>()) << "the config is not on a mount";
  RenderedStream orders;
  orders.name = "orders";
  orders.write = true;
  std::ofstream(config) << RenderSidecarConfig(service, {orders}, settings);

  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (const auto& e : sidecar["env"]) {
      setenv(e["name"].get<std::string>().c_str(), host_path(e["value"]).c_str(), 1);
    }
    if (!freopen((dir + "/sidecar.log").c_str(), "a", stderr)) _exit(126);
    std::vector<std::string> args = {"sidelog-sidecar"};
    for (const auto& a : sidecar["args"]) args.push_back(host_path(a));
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(SIDELOG_SIDECAR_BIN, argv.data());
    _exit(127);
  }
  cli::Client health("http://127.0.0.1:" + std::to_string(health_port));
  auto probe = [&](const char* name) {
    return health.Send("GET", sidecar[name]["httpGet"]["path"].get<std::string>()).status;
  };
  EXPECT_TRUE(
      testing::WaitFor([&] { return probe("startupProbe") == 200; }, std::chrono::seconds(10)));
  EXPECT_EQ(probe("readinessProbe"), 200);
  EXPECT_EQ(probe("livenessProbe"), 200);
  // The app's SIDELOG_URL reaches the API the config opened.
  cli::Client app(Env(pod["spec"]["containers"][0], "SIDELOG_URL"));
  auto status = app.Send("GET", "/v1/status");
  EXPECT_EQ(status.status, 200);
  EXPECT_EQ(status.body.value("service", ""), "orders") << status.body.dump();
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  std::filesystem::remove_all(dir);
}

TEST(SelectorMatches, LabelSelectorsAsKubernetesReadsThem) {
  Json labels = {{"app", "orders"}, {"tier", "backend"}};
  EXPECT_FALSE(SelectorMatches(Json::object(), labels));
  EXPECT_FALSE(SelectorMatches(nullptr, labels));
  EXPECT_TRUE(SelectorMatches({{"matchLabels", {{"app", "orders"}}}}, labels));
  EXPECT_FALSE(SelectorMatches({{"matchLabels", {{"app", "billing"}}}}, labels));
  auto expr = [](const std::string& key, const std::string& op, Json values = Json::array()) {
    return Json{{"matchExpressions", {{{"key", key}, {"operator", op}, {"values", values}}}}};
  };
  EXPECT_TRUE(SelectorMatches(expr("tier", "In", {"backend", "edge"}), labels));
  EXPECT_FALSE(SelectorMatches(expr("tier", "NotIn", {"backend"}), labels));
  EXPECT_TRUE(SelectorMatches(expr("zone", "NotIn", {"a"}), labels));
  EXPECT_TRUE(SelectorMatches(expr("app", "Exists"), labels));
  EXPECT_FALSE(SelectorMatches(expr("zone", "Exists"), labels));
  EXPECT_TRUE(SelectorMatches(expr("zone", "DoesNotExist"), labels));
  EXPECT_FALSE(SelectorMatches(expr("app", "Gt", {"1"}), labels));
  Json both = {{"matchLabels", {{"app", "orders"}}},
               {"matchExpressions", {{{"key", "tier"}, {"operator", "In"}, {"values", {"edge"}}}}}};
  EXPECT_FALSE(SelectorMatches(both, labels));  // both parts must match
}

}  // namespace
}  // namespace sidelog::op
