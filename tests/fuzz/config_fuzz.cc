// Fuzzes the two YAML configs a Sidelog process is started with: the sidecar's (rendered by the
// operator into a ConfigMap, or written by hand) and the consolidator's. Either parses into a
// config or is refused with a message that says where; never a crash or a hang.
#include <string>

#include "config.h"
#include "fuzz_util.h"
#include "sidelog/config.h"

using namespace sidelog;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return -1;  // configs are small; larger inputs only slow the search
  const std::string text(fuzz::Bytes(data, size));
  auto sidecar = ParseSidecarConfig(text, "fuzz.yaml");
  if (!sidecar.ok() && sidecar.status().message().empty()) {
    fuzz::Fail("a sidecar config is refused without a message");
  }
  auto consolidator = consolidator::ParseConsolidatorConfig(text, "fuzz.yaml");
  if (!consolidator.ok() && consolidator.status().message().empty()) {
    fuzz::Fail("a consolidator config is refused without a message");
  }
  return 0;
}
