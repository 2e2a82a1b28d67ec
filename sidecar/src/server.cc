#include "server.h"

#include <filesystem>

#include "sidelog/log.h"
#include "sidelog/shutdown.h"

namespace sidelog::sidecar {

using web::http::experimental::listener::http_listener;

namespace {

Result<std::unique_ptr<http_listener>> OpenListener(
    const std::string& host_port, const std::function<void(web::http::http_request)>& fn) {
  try {
    auto l = std::make_unique<http_listener>(web::uri("http://" + host_port));
    l->support(fn);
    l->open().wait();
    return l;
  } catch (const std::exception& e) {
    return Status::Unavailable("cannot listen on " + host_port + ": " + e.what());
  }
}

}  // namespace

Server::Server(SidecarConfig config) : config_(std::move(config)) {}
Server::~Server() { Stop(); }

Status Server::Start() {
  if (auto s = Deliveries::Validate(config_); !s.ok()) return s;
  std::error_code ec;
  std::filesystem::create_directories(config_.data_dir, ec);
  if (ec) return Status::Invalid("cannot create dataDir " + config_.data_dir + ": " + ec.message());

  EventLogOptions o;
  o.path = config_.data_dir + "/sidelog.db";
  o.mode = config_.nats ? LogMode::kReplicated : LogMode::kStandalone;
  o.durability = config_.durability == "normal"  ? Durability::kNormal
                 : config_.durability == "fsync" ? Durability::kFsync
                 : config_.nats                  ? Durability::kNormal
                                                 : Durability::kFsync;
  o.snapshot_every = config_.snapshot_every;
  o.max_events_per_commit = static_cast<size_t>(config_.limits.max_events_per_commit);
  o.source = ServiceSource(config_.ns, config_.service);
  std::vector<StreamSpec> streams;
  for (const auto& s : config_.streams) streams.push_back({s.name, s.rules});
  auto log = EventLog::Open(o, streams);
  if (!log.ok()) return log.status();
  log_ = std::move(log).value();

  metrics_.OnScrape([this] {
    metrics_.GetGauge("sidelog_log_size_bytes", "Size of the local event log files.")
        .Set(static_cast<double>(log_->SizeBytes()));
    for (const auto& name : log_->StreamNames()) {
      auto st = log_->Stats(name);
      if (!st.ok()) continue;
      Labels l = {{"stream", name}};
      metrics_.GetGauge("sidelog_stream_last_position", "Last position in the local log.", l)
          .Set(static_cast<double>(st->last_position));
      metrics_.GetGauge("sidelog_stream_watermark", "Watermark of the local log.", l)
          .Set(static_cast<double>(st->watermark));
      metrics_.GetGauge("sidelog_stream_events", "Events in the local log.", l)
          .Set(static_cast<double>(st->events));
      metrics_
          .GetGauge("sidelog_stream_unindexed_commits",
                    "Commits whose entity index entries are still only in memory.", l)
          .Set(static_cast<double>(st->unindexed_commits));
    }
  });

  FeedOptions feed;
  feed.heartbeat_ms = config_.sse.heartbeat_ms;
  feed.max_buffered_bytes = static_cast<size_t>(config_.sse.max_buffered_bytes);
  feed_ = std::make_unique<Feed>(log_.get(), &metrics_, feed);
  if (config_.nats) {
    ReplicatorOptions r;
    r.ns = config_.ns;
    r.nats = *config_.nats;
    r.publish_timeout_ms = config_.nats->publish_timeout_ms;
    r.give_up_startup = ShutdownSignalPending;  // SIGTERM during a long startup: stop now
    for (const auto& st : config_.streams) r.streams.push_back(st.name);
    replicator_ = std::make_unique<Replicator>(log_.get(), &metrics_, r);
  }
  deliveries_ = std::make_unique<Deliveries>(config_, log_.get(), &metrics_);
  api_ = std::make_unique<Api>(config_, log_.get(), &metrics_, feed_.get(), replicator_.get(),
                               deliveries_.get());
  auto main =
      OpenListener(config_.listen, [this](const web::http::http_request& r) { api_->Handle(r); });
  if (!main.ok()) return main.status();
  listener_ = std::move(main).value();
  auto health = OpenListener(config_.health_listen,
                             [this](const web::http::http_request& r) { api_->HandleHealth(r); });
  if (!health.ok()) return health.status();
  health_ = std::move(health).value();
  // Ready once the startup catch-up is done, or has given up because NATS is unreachable.
  if (replicator_) {
    if (auto st = replicator_->Start(); !st.ok()) return st;
  }
  api_->SetReady(true);
  // Push deliveries start once the sidecar is ready: after the startup catch-up.
  return deliveries_->Start(replicator_ ? replicator_->jetstream() : nullptr);
}

void Server::Stop() {
  if (stopped_ || !api_) return;
  stopped_ = true;
  api_->SetDraining();                            // new appends answer 503, /readyz 503
  feed_->Stop();                                  // SSE responses end
  deliveries_->Stop();                            // deliveries in flight finish and are recorded
  if (replicator_) replicator_->Stop();           // publishes in flight finish and are answered
  log_->Close();                                  // queued appends finish and are answered
  api_->WaitForAnswers(std::chrono::seconds(5));  // ...on the HTTP pool
  try {
    if (listener_) listener_->close().wait();  // null when Start failed before opening it
    if (health_) health_->close().wait();
  } catch (const std::exception& e) {
    log::Warn("closing listeners", {{"error", e.what()}});
  }
}

}  // namespace sidelog::sidecar
