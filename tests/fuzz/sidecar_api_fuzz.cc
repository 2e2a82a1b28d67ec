// Fuzzes the sidecar's HTTP API: method, request target (path and query), headers and body go
// through Api::Handle of a real standalone sidecar (the shop's orders config, its log on disk),
// as the listener would hand them over. Every answer must be well formed: an error is
// application/problem+json with type, title, status (equal to the HTTP code) and detail; a JSON
// answer parses. A crash, a sanitizer finding or a broken answer fails.
//
// Input: "METHOD\nTARGET\nName: value\n...\n\nBODY". Streaming reads (follow=true) and
// minPosition waits (answered after up to 5 s) are skipped: they hold the answer open; their
// parameters share the parsers fuzzed through the other reads.
#include <cpprest/http_msg.h>

#include <memory>
#include <string>

#include "api.h"
#include "delivery.h"
#include "feed.h"
#include "fuzz_util.h"
#include "sidelog/config.h"
#include "sidelog/event_log.h"
#include "sidelog/log.h"
#include "sidelog/metrics.h"

using namespace sidelog;

namespace {

struct Sidecar {
  SidecarConfig config;
  Metrics metrics;
  std::unique_ptr<EventLog> log;
  std::unique_ptr<sidecar::Feed> feed;
  std::unique_ptr<sidecar::Deliveries> deliveries;
  std::unique_ptr<sidecar::Api> api;
};

Sidecar* Open() {
  auto* s = new Sidecar;  // lives for the whole process
  auto config = LoadSidecarConfig(SIDELOG_SOURCE_DIR "/examples/shop/orders.yaml");
  if (!config.ok()) fuzz::Fail("the shop config does not load: " + config.status().message());
  s->config = std::move(config).value();
  s->config.nats.reset();
  s->config.data_dir = fuzz::TempDir("sidelog-fuzz-api");
  EventLogOptions o;
  o.path = s->config.data_dir + "/sidelog.db";
  o.durability = Durability::kNormal;
  std::vector<StreamSpec> streams;
  for (const auto& st : s->config.streams) streams.push_back({st.name, st.rules});
  auto log = EventLog::Open(o, streams);
  if (!log.ok()) fuzz::Fail("the log does not open: " + log.status().message());
  s->log = std::move(log).value();
  s->feed = std::make_unique<sidecar::Feed>(s->log.get(), &s->metrics, sidecar::FeedOptions{});
  s->deliveries = std::make_unique<sidecar::Deliveries>(s->config, s->log.get(), &s->metrics);
  s->api = std::make_unique<sidecar::Api>(s->config, s->log.get(), &s->metrics, s->feed.get(),
                                          nullptr, s->deliveries.get());
  s->api->SetReady(true);
  return s;
}

bool IEquals(const std::string& a, const char* b) {
  std::string lower = a;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == b;
}

void CheckAnswer(const web::http::http_response& resp, const std::string& body) {
  const int code = resp.status_code();
  if (code < 100 || code > 599) fuzz::Fail("status " + std::to_string(code));
  std::string type;
  if (auto it = resp.headers().find("Content-Type"); it != resp.headers().end()) type = it->second;
  if (code >= 400) {
    if (type != "application/problem+json") {
      fuzz::Fail(std::to_string(code) + " answered as " + type + ": " + body.substr(0, 200));
    }
    Json p = Json::parse(body, nullptr, false);
    if (!p.is_object() || !p["type"].is_string() || !p["title"].is_string() ||
        !p["detail"].is_string() || p["status"] != code) {
      fuzz::Fail("a malformed problem: " + body.substr(0, 300));
    }
  } else if (type.rfind("application/json", 0) == 0) {
    if (Json::parse(body, nullptr, false).is_discarded()) {
      fuzz::Fail("a JSON answer does not parse: " + body.substr(0, 300));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Sidecar* sidecar = [] {
    log::Init("fuzz", "off");
    return Open();
  }();
  auto head_body = fuzz::SplitN(fuzz::Bytes(data, size), "\n\n", 1);
  auto lines = fuzz::SplitN(head_body[0], "\n", 64);
  if (lines.size() < 2) return -1;
  const std::string& target = lines[1];
  if (target.find("minPosition") != std::string::npos) return -1;
  if (target.find("follow") != std::string::npos) return -1;

  web::http::http_request req;
  try {  // the listener refuses a request line that does not parse: never handed over
    req = web::http::http_request(lines[0]);
    req.set_request_uri(web::uri(target));
  } catch (const std::exception&) {
    return -1;
  }
  // Always a complete body, as the listener hands over (an unset one would never end).
  const std::string body = head_body.size() > 1 ? head_body[1] : std::string();
  req.set_body(std::vector<unsigned char>(body.begin(), body.end()));
  req.headers().remove("Content-Type");
  for (size_t i = 2; i < lines.size(); ++i) {
    auto colon = lines[i].find(':');
    if (colon == std::string::npos || colon == 0) continue;
    std::string name = lines[i].substr(0, colon);
    std::string value = lines[i].substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    if (IEquals(name, "content-length")) continue;  // the listener computes it from the body
    req.headers().add(name, value);
  }
  sidecar->api->Handle(req);
  auto resp = req.get_response().get();
  CheckAnswer(resp, resp.extract_utf8string(true).get());
  return 0;
}
