// docs/api/openapi.yaml and the server's route table must list the same routes.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <set>

#include "api.h"

namespace sidelog::sidecar {
namespace {

TEST(OpenApi, DocumentsExactlyTheServersRoutes) {
  YAML::Node doc = YAML::LoadFile(std::string(SIDELOG_SOURCE_DIR) + "/docs/api/openapi.yaml");
  ASSERT_TRUE(doc["openapi"]) << "not an OpenAPI document";
  EXPECT_EQ(doc["openapi"].as<std::string>().rfind("3.1", 0), 0u);
  std::set<std::string> documented;
  for (const auto& path : doc["paths"]) {
    for (const auto& op : path.second) {
      std::string method = op.first.as<std::string>();
      if (method == "parameters" || method == "summary" || method == "description") continue;
      for (auto& c : method) c = static_cast<char>(toupper(c));
      documented.insert(method + " " + path.first.as<std::string>());
    }
  }
  std::set<std::string> served;
  for (const auto& r : Api::Routes()) served.insert(r.method + " " + r.path);
  for (const auto& s : served) EXPECT_TRUE(documented.count(s)) << "undocumented route " << s;
  for (const auto& d : documented)
    EXPECT_TRUE(served.count(d)) << "documented but not served: " << d;
}

}  // namespace
}  // namespace sidelog::sidecar
