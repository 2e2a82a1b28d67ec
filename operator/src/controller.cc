#include "controller.h"

#include "sidelog/log.h"

namespace sidelog::op {

Controller::Controller(std::string kind, Informer* informer, Reconciler* reconciler,
                       Metrics* metrics, ControllerOptions options)
    : kind_(std::move(kind)),
      informer_(informer),
      reconciler_(reconciler),
      metrics_(metrics),
      options_(options),
      queue_(options.queue) {
  informer_->AddHandler([this](const ObjectEvent& event) {
    if (ChangesMoreThanStatus(event)) queue_.Add(ObjectKey(*event.object));
  });
  metrics_->OnScrape([this] {
    metrics_
        ->GetGauge("sidelog_operator_queue_depth", "Keys waiting to be reconciled, by kind.",
                   {{"kind", kind_}})
        .Set(static_cast<double>(queue_.Len()));
  });
}

Controller::~Controller() { Stop(); }

void Controller::Watches(Informer* informer, Mapper map) {
  informer->AddHandler([this, map = std::move(map)](const ObjectEvent& event) {
    for (const auto& key : map(event)) queue_.Add(key);
  });
}

void Controller::EnqueueAll() {
  for (const auto& key : informer_->Keys()) queue_.Add(key);
}

void Controller::Start() {
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { Work(); });
  threads_.emplace_back([this] { Resync(); });
}

void Controller::Stop() {
  stop_ = true;
  queue_.ShutDown();
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void Controller::Resync() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, options_.resync_period, [this] { return stop_.load(); })) {
    EnqueueAll();
  }
}

void Controller::Work() {
  auto& duration =
      metrics_->GetHistogram("sidelog_operator_reconcile_duration_seconds",
                             "Time spent in one reconcile, by kind.", {{"kind", kind_}});
  auto count = [&](const char* result) {
    metrics_
        ->GetCounter("sidelog_operator_reconciles_total", "Reconciles, by kind and result.",
                     {{"kind", kind_}, {"result", result}})
        .Inc();
  };
  std::string key;
  while (queue_.Get(&key)) {
    auto started = std::chrono::steady_clock::now();
    Result<ReconcileResult> r = Status::Internal("reconcile threw");
    try {
      r = reconciler_->Reconcile(key);
    } catch (const std::exception& e) {
      r = Status::Internal(std::string("reconcile threw: ") + e.what());
    }
    duration.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    if (r.ok()) {
      queue_.Forget(key);
      if (r->requeue_after.count() > 0) {
        queue_.AddAfter(key, r->requeue_after);
        count("requeue");
      } else {
        count("success");
      }
    } else {
      count("error");
      log::Warn("reconcile failed; will retry", {{"kind", kind_},
                                                 {"key", key},
                                                 {"error", r.status().message()},
                                                 {"failures", queue_.Failures(key) + 1}});
      // An answer that says how long to wait (429, Retry-After) is waited for at least.
      int retry_after = r.status().context().retry_after_seconds.value_or(0);
      queue_.AddRateLimited(key, std::chrono::seconds(retry_after));
    }
    queue_.Done(key);
  }
}

}  // namespace sidelog::op
