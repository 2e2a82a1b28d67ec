// Server: the sidecar's parts wired together: the event log, the feed, the API and its two
// listeners. Start() opens everything; Stop() drains in order (no new appends, close
// subscriptions, finish queued appends, close the log, close the listeners).
#pragma once

#include <cpprest/http_listener.h>

#include <memory>

#include "api.h"
#include "delivery.h"
#include "feed.h"
#include "sidelog/config.h"
#include "sidelog/event_log.h"
#include "sidelog/metrics.h"
#include "sidelog/replicator.h"

namespace sidelog::sidecar {

class Server {
 public:
  explicit Server(SidecarConfig config);
  ~Server();

  Status Start();
  void Stop();

 private:
  SidecarConfig config_;
  Metrics metrics_;
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<Replicator> replicator_;  // null in standalone mode
  std::unique_ptr<Feed> feed_;
  std::unique_ptr<Deliveries> deliveries_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<web::http::experimental::listener::http_listener> listener_;
  std::unique_ptr<web::http::experimental::listener::http_listener> health_;
  bool stopped_ = false;
};

}  // namespace sidelog::sidecar
