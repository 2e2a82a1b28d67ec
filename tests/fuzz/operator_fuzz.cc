// Fuzzes what the operator reads from the API server:
//  - an AdmissionReview POSTed to the injection webhook, decided against the shop's
//    EventServices (examples/shop/k8s, all Ready): it is refused as a bad review, or answered
//    with the request's uid; an injected pod's JSON patch applies to the pod, and injecting the
//    patched pod again changes nothing (reinvocation is idempotent);
//  - a line of a watch response: an event every watcher can read, or an error.
#include <string>
#include <vector>

#include "admission_server.h"
#include "fuzz_util.h"
#include "kube_client.h"
#include "shop_objects.h"
#include "sidecar_injector.h"
#include "sidelog/base64.h"
#include "sidelog/log.h"

using namespace sidelog;
using namespace sidelog::op;

namespace {

std::vector<std::shared_ptr<const Json>> ShopServices() {
  std::vector<std::shared_ptr<const Json>> out;
  for (auto s : op::testing::ShopObjects("EventService")) {
    const std::string name = s["metadata"]["name"];
    s["status"] = {
        {"conditions", {{{"type", "Ready"}, {"status", "True"}, {"reason", "Rendered"}}}},
        {"sidecarConfig", {{"configMap", "sidelog-" + name}, {"hash", "h-" + name}}}};
    out.push_back(std::make_shared<const Json>(std::move(s)));
  }
  if (out.empty()) fuzz::Fail("no EventService in examples/shop/k8s");
  return out;
}

void Admission(const std::string& body) {
  static const auto services = ShopServices();
  InjectorOptions options;
  options.sidecar_image = "docker.io/sidelog/sidecar:0.1.0";
  options.operator_version = "0.1.0";
  auto lookup = [](const std::string& ns) {
    return ns == "shop" ? services : std::vector<std::shared_ptr<const Json>>{};
  };
  Json decided_request;
  AdmissionDecision decision;
  auto answer = ReviewAdmission(body, [&](const Json& request) {
    decided_request = request;
    decision = InjectSidecarFor(request, lookup, options);
    return decision;
  });
  if (!answer.review) {
    if (answer.error.empty()) fuzz::Fail("a refused review without a reason");
    return;
  }
  const Json& response = (*answer.review)["response"];
  if (response["uid"] != decided_request["uid"] || !response["allowed"].is_boolean()) {
    fuzz::Fail("a malformed answer: " + answer.review->dump().substr(0, 300));
  }
  if (!response.contains("patch")) return;
  auto patch_text = Base64Decode(response["patch"].get<std::string>(), "patch");
  if (!patch_text.ok()) fuzz::Fail("the patch is not base64");
  Json patch = Json::parse(*patch_text, nullptr, false);
  if (!patch.is_array()) fuzz::Fail("the patch is not a JSON array");
  Json patched;
  try {
    patched = decided_request["object"].patch(patch);
  } catch (const Json::exception& e) {
    fuzz::Fail(std::string("the patch does not apply: ") + e.what() +
               "\npod: " + decided_request["object"].dump().substr(0, 400) +
               "\npatch: " + patch.dump().substr(0, 400));
  }
  Json again = decided_request;
  again["object"] = patched;
  auto second = InjectSidecarFor(again, lookup, options);
  if (!second.allowed || !second.patch.empty()) {
    fuzz::Fail("injecting an injected pod again is not a no-op: " + second.message +
               second.patch.dump().substr(0, 300));
  }
}

void Watch(const std::string& line) {
  auto ev = DecodeWatchEvent(line);
  if (!ev.ok()) {
    if (ev.status().message().empty()) fuzz::Fail("a refused watch line without a reason");
    return;
  }
  // What the informer does with it: none of these may throw.
  try {
    const Json& meta = ev->object["metadata"];
    (void)meta.value("resourceVersion", "");
    if (ev->type != "BOOKMARK") (void)ObjectKey(ev->object);
    ev->object["metadata"].erase("managedFields");
  } catch (const Json::exception& e) {
    fuzz::Fail(std::string("a decoded watch event cannot be read: ") + e.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = [] {
    log::Init("fuzz", "off");
    return true;
  }();
  (void)quiet;
  if (size > 64 * 1024) return -1;
  const std::string text(fuzz::Bytes(data, size));
  Admission(text);
  Watch(text);
  return 0;
}
