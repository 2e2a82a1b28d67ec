// The example shop's custom resources (examples/shop/k8s/), read as the API server would
// store them, for tests that reconcile them.
#pragma once

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "kube_client.h"
#include "sidelog/yaml.h"

namespace sidelog::op::testing {

// Every document of kind `kind` in the YAML files `files` (paths relative to the source tree).
inline std::vector<Json> ShopObjects(const std::string& kind,
                                     const std::vector<std::string>& files = {
                                         "examples/shop/k8s/streams.yaml",
                                         "examples/shop/k8s/services.yaml"}) {
  std::vector<Json> out;
  for (const auto& f : files) {
    std::ifstream in(std::string(SIDELOG_SOURCE_DIR) + "/" + f);
    std::stringstream all;
    all << in.rdbuf();
    // Documents are separated by lines of "---".
    std::string text = all.str(), doc, line;
    std::stringstream lines(text + "\n---\n");
    while (std::getline(lines, line)) {
      if (line != "---") {
        doc += line + "\n";
        continue;
      }
      auto parsed = ParseYaml(doc, f);
      doc.clear();
      if (!parsed.ok() || !parsed->root.is_object()) continue;
      if (parsed->root.value("kind", "") == kind) out.push_back(parsed->root);
    }
  }
  return out;
}

}  // namespace sidelog::op::testing
