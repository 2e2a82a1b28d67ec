#include "follower.h"

#include "sidelog/log.h"

namespace sidelog::consolidator {

using Clock = std::chrono::steady_clock;

Follower::Follower(const ConsolidatorConfig& config, const SourceConfig& source,
                   Projection* projection, Metrics* metrics)
    : config_(config),
      source_(source),
      projection_(projection),
      metrics_(metrics),
      queue_(static_cast<size_t>(std::max(4 * config.max_batch_events, 4000))),
      reader_(MakeSourceReader(config, source.stream, &queue_)) {
  snapshot_.stream = source.stream;
  snapshot_.state = "starting";
}

Follower::~Follower() { Stop(); }

void Follower::Start() {
  Stop();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
    if (halted_) {
      halted_ = false;
      snapshot_.state = "starting";
      snapshot_.error.clear();
    }
  }
  thread_ = std::thread([this] { Run(); });
}

void Follower::Halt(const std::string& why) {
  Stop();
  std::lock_guard<std::mutex> lock(mu_);
  halted_ = true;
  snapshot_.state = "reset";
  snapshot_.error = why;
  snapshot_.idle = false;
  snapshot_.oldest_pending = 0;
}

void Follower::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  queue_.Close();  // a Pop waiting for events returns
  if (thread_.joinable()) thread_.join();
  reader_->Stop();
}

bool Follower::stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

void Follower::Wait(std::chrono::seconds delay) {
  std::unique_lock<std::mutex> lock(mu_);
  wake_.wait_for(lock, delay, [&] { return stopping_; });
}

FollowerSnapshot Follower::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  FollowerSnapshot s = snapshot_;
  s.reader_error = reader_->last_error();
  if (s.oldest_pending == 0) s.oldest_pending = queue_.OldestTime();
  if (s.failed_event) s.oldest_pending = s.failed_event->time;
  bool following = reader_->following();
  s.idle = s.idle && following && queue_.size() == 0 && s.error.empty();
  // "starting" until the checkpoint is loaded: position and counts are not known before.
  if (s.error.empty() && checkpoint_loaded_) s.state = following ? "following" : "catching-up";
  return s;
}

void Follower::Run() {
  auto backoff = std::chrono::seconds(1);
  while (!stopping()) {
    auto checkpoint = projection_->LoadCheckpoint(source_.stream);
    auto identity = projection_->LoadIdentity(source_.stream);
    if (checkpoint.ok() && !identity.ok()) checkpoint = identity.status();
    Status st;
    if (checkpoint.ok()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        snapshot_.checkpoint = *checkpoint;
        checkpoint_loaded_ = true;
      }
      reader_->Start(checkpoint->cursor, *identity);
      Checkpoint before = *checkpoint;
      st = Fold(*checkpoint);
      reader_->Stop();
      std::lock_guard<std::mutex> lock(mu_);
      if (before.cursor < snapshot_.checkpoint.cursor) backoff = std::chrono::seconds(1);
    } else {
      st = checkpoint.status();
    }
    if (stopping()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      snapshot_.state = "failing";
      snapshot_.error = st.message();
      snapshot_.idle = false;
    }
    log::Error(
        "folding stopped; retrying from the checkpoint",
        {{"stream", source_.stream}, {"error", st.message()}, {"retryInSeconds", backoff.count()}});
    Wait(backoff);
    backoff = std::min(backoff * 2, std::chrono::seconds(60));
  }
}

void Follower::Record(const ApplyResult& r, double seconds) {
  const Labels labels = {{"source", source_.stream}};
  for (auto [outcome, count] : {std::pair{"handled", r.handled}, std::pair{"skipped", r.skipped},
                                std::pair{"dead_lettered", r.dead_lettered}}) {
    metrics_
        ->GetCounter("sidelog_consolidator_events_total", "Events read from a source, by outcome.",
                     {{"source", source_.stream}, {"outcome", outcome}})
        .Inc(static_cast<double>(count));
  }
  metrics_
      ->GetCounter(
          "sidelog_consolidator_handler_errors_total",
          "Handler failures: dead-lettered events, and each failed attempt of a stopped source.",
          labels)
      .Inc(static_cast<double>(r.dead_lettered + (r.failed_event ? 1 : 0)));
  if (!r.error.ok()) return;
  metrics_
      ->GetCounter("sidelog_consolidator_batches_total",
                   "Batches committed, each in one transaction with its checkpoint.", labels)
      .Inc();
  metrics_
      ->GetHistogram("sidelog_consolidator_batch_seconds", "Time to apply and commit a batch.",
                     labels)
      .Observe(seconds);
}

Status Follower::Fold(Checkpoint checkpoint) {
  while (!stopping()) {
    Batch batch{source_.stream, {}, checkpoint.cursor};
    auto take = [&](QueueItem& item) {
      if (item.event) {
        std::lock_guard<std::mutex> lock(mu_);
        if (batch.events.empty()) snapshot_.oldest_pending = item.event->time;
        batch.events.push_back(std::move(*item.event));
      }
      batch.end = item.cursor;
    };
    auto first = queue_.Pop(Clock::now() + std::chrono::milliseconds(200));
    if (!first) {
      std::lock_guard<std::mutex> lock(mu_);
      snapshot_.idle = true;
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      snapshot_.idle = false;
    }
    take(*first);
    const auto deadline = Clock::now() + config_.max_batch_delay;
    while (batch.events.size() < static_cast<size_t>(config_.max_batch_events)) {
      auto item = queue_.Pop(deadline);
      if (!item) break;
      take(*item);
    }
    if (stopping()) return Status::Unavailable("stopped");

    auto started = Clock::now();
    ApplyResult r = projection_->Apply(batch, checkpoint);
    checkpoint = r.checkpoint;
    {
      std::lock_guard<std::mutex> lock(mu_);
      snapshot_.checkpoint = checkpoint;
      snapshot_.oldest_pending = 0;
      snapshot_.handled += r.handled;
      snapshot_.skipped += r.skipped;
      snapshot_.dead_lettered += r.dead_lettered;
      snapshot_.batches += 1;
      snapshot_.failed_event = r.failed_event;
      if (r.error.ok()) snapshot_.error.clear();
    }
    if (metrics_) Record(r, std::chrono::duration<double>(Clock::now() - started).count());
    if (r.dead_lettered > 0) {
      log::Warn("events failed their handler and went to sidelog_dead_letters",
                {{"stream", source_.stream}, {"count", r.dead_lettered}});
    }
    if (!r.error.ok()) return r.error;
  }
  return Status::Unavailable("stopped");
}

}  // namespace sidelog::consolidator
