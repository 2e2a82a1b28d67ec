// The rendered sidecar config of the shop's services against golden files
// (tests/operator/golden/), and what the sidecar's own loader makes of it. After an intended
// change of the rendering, SIDELOG_UPDATE_GOLDEN=1 rewrites the golden files.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "shop_objects.h"
#include "sidecar_config.h"
#include "sidelog/config.h"

namespace sidelog::op {
namespace {

using testing::ShopObjects;

std::string Golden(const std::string& name) {
  return std::string(SIDELOG_SOURCE_DIR) + "/tests/operator/golden/" + name;
}

const Json& Find(const std::vector<Json>& objects, const std::string& name) {
  for (const auto& o : objects)
    if (o["metadata"]["name"] == name) return o;
  throw std::runtime_error("no object " + name);
}

// The service's config with every listed stream resolved, as the reconciler renders it.
std::string RenderShop(const std::string& service_name, const SidecarSettings& settings) {
  auto streams = ShopObjects("EventStream");
  auto services = ShopObjects("EventService");
  const Json& service = Find(services, service_name);
  std::vector<RenderedStream> rendered;
  for (const auto& p : service["spec"].value("produces", Json::array()))
    rendered.push_back({p, true, {}, Find(streams, p)["spec"]["entity"], Json()});
  for (const auto& c : service["spec"].value("consumes", Json::array()))
    rendered.push_back({c["stream"], false, c.value("types", std::vector<std::string>{}),
                        Find(streams, c["stream"])["spec"]["entity"], c.value("deliver", Json())});
  return RenderSidecarConfig(service, rendered, settings);
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

SidecarSettings Nats() {
  SidecarSettings s;
  s.nats.url = "nats://nats.sidelog-system:4222";
  s.nats.creds_file = "/etc/sidelog/nats/user.creds";
  s.nats.tls.ca = "/etc/sidelog/nats-tls/ca.crt";
  s.nats.password = "must-not-appear";
  s.nats.token = "must-not-appear-either";
  return s;
}

TEST(SidecarConfig, TheShopsServicesRenderAsTheGoldenFiles) {
  ExpectGolden("shop-orders.yaml", RenderShop("orders", Nats()));
  ExpectGolden("shop-billing.yaml", RenderShop("billing", Nats()));
}

TEST(SidecarConfig, TheSidecarLoadsTheRenderedConfig) {
  const std::string yaml = RenderShop("billing", Nats());
  auto c = ParseSidecarConfig(yaml, "rendered");
  ASSERT_TRUE(c.ok()) << c.status().message() << "\n" << yaml;
  EXPECT_EQ(c->service, "billing");
  EXPECT_EQ(c->health_listen, "0.0.0.0:4381");
  EXPECT_EQ(c->data_dir, "/var/lib/sidelog");
  ASSERT_TRUE(c->nats);
  EXPECT_EQ(c->nats->creds_file, "/etc/sidelog/nats/user.creds");
  EXPECT_EQ(c->nats->tls.ca, "/etc/sidelog/nats-tls/ca.crt");
  // The folding rules compile as the sidecar compiles them.
  for (const auto& s : c->streams) EXPECT_TRUE(s.rules) << s.name;
}

TEST(SidecarConfig, SecretsNeverGoIntoTheConfigMap) {
  const std::string yaml = RenderShop("orders", Nats());
  EXPECT_EQ(yaml.find("must-not-appear"), std::string::npos) << yaml;
}

TEST(SidecarConfig, WithoutNatsTheSidecarRunsStandalone) {
  auto c = ParseSidecarConfig(RenderShop("orders", SidecarSettings{}), "rendered");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_FALSE(c->nats.has_value());
}

TEST(SidecarConfig, TheHashFollowsTheContent) {
  const Json service = Find(ShopObjects("EventService"), "orders");
  const Json a = SidecarConfigMap(service, RenderShop("orders", Nats()));
  const Json b = SidecarConfigMap(service, RenderShop("orders", Nats()));
  const Json c = SidecarConfigMap(service, RenderShop("orders", SidecarSettings{}));
  EXPECT_EQ(a, b) << "rendering is deterministic";
  EXPECT_NE(a["metadata"]["annotations"][kConfigHashAnnotation],
            c["metadata"]["annotations"][kConfigHashAnnotation]);
  EXPECT_EQ(a["metadata"]["name"], "sidelog-orders");
  EXPECT_EQ(a["data"].size(), 1u);
  EXPECT_TRUE(a["data"].contains(kSidecarConfigKey));
}

TEST(ToYaml, QuotesWhatYamlWouldReadAsSomethingElse) {
  const Json v = {{"words",
                   {"on", "off", "yes", "No", "true", "null", "~", "", "1.5", "42", "12:30", "#x",
                    "plain", "/a/b", "nats://h:1"}}};
  const std::string yaml = ToYaml(v);
  auto back = ParseYaml(yaml, "round-trip");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->root, v) << yaml;
  EXPECT_NE(yaml.find("- plain"), std::string::npos) << "plain words stay plain: " << yaml;
}

TEST(ToYaml, NumbersBooleansAndNestedValuesRoundTrip) {
  const Json v = Json::parse(
      R"({"a":1,"b":-2.5,"c":true,"d":null,"e":[],"f":{},"g":[{"op":"set","value":[1,"x"]}],
          "h":18446744073709551615,"OrderCreated":{"type":"object"}})");
  auto back = ParseYaml(ToYaml(v), "round-trip");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->root, v) << ToYaml(v);
}

}  // namespace
}  // namespace sidelog::op
