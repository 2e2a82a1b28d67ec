// Api: the sidecar's HTTP API v1 (DESIGN.md "Sidecar HTTP API") over an EventLog.
//
// Handle() serves the main listener (loopback by default); HandleHealth() serves the health
// listener, which answers only /livez, /readyz and /metrics. Handlers never block a pool thread
// while waiting: appends are answered from the log's writer thread when their commit is
// durable, and `minPosition` waits are answered by the Feed thread. Thread-safe.
#pragma once

#include <cpprest/http_msg.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "delivery.h"
#include "feed.h"
#include "sidelog/config.h"
#include "sidelog/event_log.h"
#include "sidelog/metrics.h"
#include "sidelog/replicator.h"

namespace sidelog::sidecar {

struct RouteSpec {
  std::string method;
  std::string path;  // template, e.g. "/v1/streams/{stream}/events"
};

class Api {
 public:
  // `replicator` is null in standalone mode.
  Api(const SidecarConfig& config, EventLog* log, Metrics* metrics, Feed* feed,
      Replicator* replicator, Deliveries* deliveries);

  void Handle(const web::http::http_request& request);
  void HandleHealth(const web::http::http_request& request);

  // Every route the main listener serves (the OpenAPI test compares this with the spec).
  static const std::vector<RouteSpec>& Routes();

  void SetReady(bool ready) { ready_ = ready; }
  // While draining, new appends answer 503 and /readyz answers 503.
  void SetDraining() { draining_ = true; }
  // Waits (at most `limit`) until every append answer handed to the HTTP pool was sent: the
  // answers use this object, which must outlive them.
  void WaitForAnswers(std::chrono::milliseconds limit);

  struct Call;

 private:
  using Handler = void (Api::*)(Call&);
  struct Route {
    RouteSpec spec;
    Handler handler;
  };
  static const std::vector<Route>& Table();

  void Dispatch(Call& call, bool health_only);
  void Finish(Call& call, web::http::http_response response, const std::string& detail = {});
  void Fail(Call& call, const Status& status);
  void ReplyJson(Call& call, int http_status, const Json& body);

  // Route handlers.
  void Append(Call& call);
  void EntityEvents(Call& call);
  void EntityState(Call& call);
  void ListEntities(Call& call);
  void StreamEvents(Call& call);
  void Streams(Call& call);
  void StatusRoute(Call& call);
  void ListSubscriptions(Call& call);
  void GetSubscription(Call& call);
  void ListParked(Call& call);
  void ReplayParked(Call& call);
  void DiscardParked(Call& call);
  void Livez(Call& call);
  void Readyz(Call& call);
  void MetricsRoute(Call& call);

  void AppendBody(Call& call, const std::vector<unsigned char>& body);
  void AnswerState(Call& call, const std::string& stream, const std::string& entity,
                   const StateQuery& query);
  // The configured stream named by the path, or a NotFound reply (returns null).
  const StreamConfig* StreamOf(Call& call);
  bool HostAllowed(const web::http::http_request& request) const;

  const SidecarConfig config_;
  EventLog* log_;
  Metrics* metrics_;
  Feed* feed_;
  Replicator* replicator_;
  Deliveries* deliveries_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  std::atomic<int> answers_pending_{0};  // posted to the HTTP pool, not sent yet
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::string listen_host_;
};

}  // namespace sidelog::sidecar
