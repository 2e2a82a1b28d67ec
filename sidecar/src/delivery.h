// Push delivery (docs/subscriptions.md): for every stream with `deliver:`, the sidecar POSTs
// each event that matches the stream's `types` to the app as a CloudEvent, at least once, and
// remembers where the service is.
//
//  - One Subscription per such stream, named after it. Its scheduler thread reads the local log
//    up to the watermark into a bounded window, hands events to `maxInFlight` worker threads
//    (each with its own keep-alive connection to the app), and records what is done.
//  - `ordering: entity`: an entity's next event goes out only after the previous one was
//    acknowledged or parked; `none`: any event of the window, up to maxInFlight at once.
//  - The app answers 2xx (done), 429, 5xx or nothing in `timeout` (retry with exponential
//    backoff), another 4xx (parked at once), or a body {"status": "SUCCESS|RETRY|DROP"}. After
//    `maxAttempts` the event is parked; parked events are listed, replayed and discarded here.
//  - An app that does not accept connections is not a failure of the event: delivery waits
//    for it with backoff, one probe at a time, and the status says so.
//  - Where the position lives: standalone, or with `group: pod`, in a SubscriptionStore beside
//    the log; a crash redelivers only what was in flight (nothing is skipped). Replicated with
//    `group: service`, in a JetStream durable consumer shared by the service's pods: JetStream
//    gives each commit to one pod, and a pod delivers an entity's commit only once the one
//    before it is acknowledged (its own, or below the consumer's ack floor). Parked events are
//    kept by the pod that parked them.
//
// Thread-safe. Start() after the sidecar is ready; Stop() before the log closes.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sidelog/config.h"
#include "sidelog/event_log.h"
#include "sidelog/metrics.h"
#include "sidelog/status.h"
#include "sidelog/subscription_store.h"

namespace sidelog {
class JetStream;
}

namespace sidelog::sidecar {

class Subscription;

class Deliveries {
 public:
  Deliveries(const SidecarConfig& config, EventLog* log, Metrics* metrics);
  ~Deliveries();

  // Invalid when a delivery has no port (neither `deliver.port` nor `appPort`).
  static Status Validate(const SidecarConfig& config);
  // Opens the store and starts delivering (Validate first). `js`: the replicated sidecar's
  // JetStream connection (null standalone), for `group: service`.
  Status Start(JetStream* js);
  // Finishes deliveries in flight (each at most its timeout), records them, stops.
  void Stop();

  bool empty() const { return subscriptions_.empty(); }

  // GET /v1/subscriptions and /v1/subscriptions/{name}.
  Json List() const;
  Result<Json> Get(const std::string& name) const;
  // GET /v1/subscriptions/{name}/parked: parked events with id > after, with the events.
  Result<Json> Parked(const std::string& name, int64_t after, int limit) const;
  // POST /v1/subscriptions/{name}/parked/replay: delivers parked events again (all, or `ids`).
  // A replayed event leaves the parked list once the app acknowledged it.
  Result<Json> Replay(const std::string& name, const std::optional<std::vector<int64_t>>& ids);
  // DELETE /v1/subscriptions/{name}/parked/{id}.
  Status Discard(const std::string& name, int64_t id);

 private:
  Result<Subscription*> Find(const std::string& name) const;

  const SidecarConfig& config_;
  EventLog* log_;
  Metrics* metrics_;
  std::unique_ptr<SubscriptionStore> store_;
  std::vector<std::unique_ptr<Subscription>> subscriptions_;
};

}  // namespace sidelog::sidecar
