#include "consolidator.h"

#include <cstdlib>

#include "sidelog/log.h"

namespace sidelog::consolidator {

using Clock = std::chrono::steady_clock;

namespace {

std::string Now() { return FormatTime(NowMicros()); }

Json EventRef(const StoredEvent& e) {
  return {{"id", e.id},
          {"type", e.type},
          {"entity", e.entity},
          {"version", e.version},
          {"position", e.position},
          {"index", e.index},
          {"time", FormatTime(e.time)}};
}

}  // namespace

Consolidator::Consolidator(ConsolidatorConfig config)
    : config_(std::move(config)), target_(Target::FromConfig(config_)) {
  queries_ = std::make_unique<Queries>(config_, target_.get());
}

Consolidator::~Consolidator() { Stop(); }

Status Consolidator::OpenLive() {
  auto pipeline = Pipeline::Open(
      config_, [t = target_.get()] { return t->OpenWriter(Slot::kLive); }, &metrics_);
  if (!pipeline.ok()) return pipeline.status();
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    live_ = std::move(pipeline).value();
  }
  // The followers start once their sources are known to be the streams of the checkpoints.
  std::map<std::string, StreamStats> stats;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    checks_.clear();
    stats = stats_;
  }
  if (!stats.empty()) VerifySources(stats);
  std::lock_guard<std::mutex> lock(live_mu_);
  return live_->projection().SaveMeta("projection", ProjectionHashOf(config_));
}

void Consolidator::VerifySources(const std::map<std::string, StreamStats>& stats) {
  Pipeline* live = nullptr;
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    live = live_.get();  // the supervisor (or Start, before it) owns its lifetime
  }
  if (live == nullptr) return;
  for (const auto& source : config_.sources) {
    const std::string& stream = source.stream;
    SourceCheck check;
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      check = checks_[stream];
    }
    if (!check.reset.is_null()) continue;
    if (!check.loaded) {
      auto recorded = live->projection().LoadIdentity(stream);
      if (!recorded.ok()) continue;  // the database is away: the next round tries again
      check.recorded = *recorded;
      check.loaded = true;
    }
    auto it = stats.find(stream);
    const StreamStats* st = it == stats.end() ? nullptr : &it->second;
    const std::string identity = st ? st->identity : "";
    std::string why;
    bool start = true;
    if (identity.empty()) {
      // The source does not say (yet: a replicated sidecar before it reached JetStream). A
      // checkpoint with an identity waits for it; one without follows as before.
      start = check.recorded.empty();
    } else if (!check.recorded.empty()) {
      if (check.recorded != identity) {
        why = "stream " + stream +
              " is not the stream the checkpoint belongs to: its identity is " + identity +
              ", the checkpoint's " + check.recorded;
      }
    } else {
      // No identity recorded yet (a new read model, or one from before identities): a
      // checkpoint past the stream's end cannot be this stream's. A running follower's
      // checkpoint may be newer than `st`, so it is only recorded.
      auto cp = live->projection().LoadCheckpoint(stream);
      if (!cp.ok()) continue;
      if (!live->Running(stream) && cp->cursor.position > st->last) {
        why = "the checkpoint of " + stream + " (position " + std::to_string(cp->cursor.position) +
              ") is past the stream's end (position " + std::to_string(st->last) + ")";
      } else if (live->projection().SaveIdentity(stream, identity).ok()) {
        check.recorded = identity;
      } else {
        continue;
      }
    }
    if (!why.empty()) {
      ResetSource(*live, stream, why, st, check);
    } else if (start) {
      live->StartSource(stream);
    }
    std::lock_guard<std::mutex> lock(state_mu_);
    checks_[stream] = check;
  }
}

void Consolidator::ResetSource(Pipeline& live, const std::string& stream, const std::string& why,
                               const StreamStats* stats, SourceCheck& check) {
  auto cp = live.projection().LoadCheckpoint(stream);
  const int64_t position = cp.ok() ? cp->cursor.position : -1;
  const std::string message =
      why + "; its folding stopped, and a rebuild folds the new stream from its beginning";
  check.reset = {{"reason", "SourceReset"},
                 {"message", message},
                 {"recordedIdentity", check.recorded},
                 {"identity", stats ? stats->identity : ""},
                 {"checkpoint", position},
                 {"lastPosition", stats ? stats->last : 0}};
  live.HaltSource(stream, message);
  log::Error("SourceReset: a source is not the stream its checkpoint belongs to",
             {{"reason", "SourceReset"},
              {"stream", stream},
              {"error", message},
              {"recordedIdentity", check.recorded},
              {"identity", stats ? stats->identity : ""},
              {"checkpoint", position},
              {"lastPosition", stats ? stats->last : 0}});
}

Status Consolidator::Start() {
  if (auto st = target_->Lock(); !st.ok()) return st;
  // The sources' identities first, so the followers that match start at once.
  if (auto stats = stats_source_.Fetch(); stats.ok()) {
    std::lock_guard<std::mutex> lock(state_mu_);
    stats_ = *stats;
  }
  // The leader from here on: /v1/status says so before /readyz can answer 200.
  started_ = true;
  // Built from other sources, schema or handlers? The new handlers must not run on tables the
  // old ones built: serve the old view as it is and rebuild first.
  Result<std::string> recorded = std::string();
  {
    auto db = target_->OpenWriter(Slot::kLive);
    recorded = db.ok() ? RecordedProjectionHash(**db) : Result<std::string>(db.status());
  }
  if (!recorded.ok()) {
    started_ = false;
    return recorded.status();
  }
  if (!recorded->empty() && *recorded != ProjectionHashOf(config_)) {
    frozen_ = true;
    queries_->SetLenient(true);
    log::Warn(
        "the sources, schema or handlers changed: rebuilding before folding; queries "
        "answer from the previous read model until the new one is swapped in",
        {{"target", target_->Describe(Slot::kLive)},
         {"recordedProjection", *recorded},
         {"projection", ProjectionHashOf(config_)}});
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      rebuild_state_ = RebuildState{};
      rebuild_state_.state = "requested";
      rebuild_state_.requested_at = Now();
      rebuild_state_.reason = "projection changed";
    }
    supervisor_ = std::thread([this] { Supervise(); });
    return Status::Ok();
  }
  if (auto st = OpenLive(); !st.ok()) {
    started_ = false;
    return st;
  }
  if (auto st = queries_->Check(); !st.ok()) {
    started_ = false;
    std::lock_guard<std::mutex> lock(live_mu_);
    live_.reset();
    return st;
  }
  log::Info("folding",
            {{"target", target_->Describe(Slot::kLive)},
             {"from", config_.delivery == Delivery::kSidecar
                          ? config_.sidecar_url
                          : "JetStream " + config_.nats->url + " (" +
                                (config_.delivery == Delivery::kPull ? "pull" : "push") + ")"},
             {"sources", config_.sources.size()},
             {"handlers", config_.handlers.size()}});
  supervisor_ = std::thread([this] { Supervise(); });
  return Status::Ok();
}

void Consolidator::Stop() {
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (supervisor_.joinable()) supervisor_.join();
  rebuild_.reset();
  std::unique_ptr<Pipeline> live;
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    live = std::move(live_);
  }
  live.reset();  // stops its followers after their batches in flight
}

bool Consolidator::ready() const {
  if (frozen_) return true;  // the previous view answers queries
  std::lock_guard<std::mutex> lock(live_mu_);
  return live_ != nullptr;
}

void Consolidator::SetRebuild(const std::function<void(RebuildState&)>& change) {
  std::lock_guard<std::mutex> lock(state_mu_);
  change(rebuild_state_);
}

Status Consolidator::CancelRebuild() {
  std::lock_guard<std::mutex> lock(state_mu_);
  const std::string& s = rebuild_state_.state;
  if (s != "requested" && s != "building" && s != "swapping") {
    ErrorContext ctx;
    ctx.reason = "NoRebuild";
    return Status::Conflict("no rebuild is under way (the last one is " + s + ")", ctx);
  }
  cancel_ = true;
  wake_.notify_all();
  return Status::Ok();
}

Status Consolidator::RequestRebuild() {
  std::lock_guard<std::mutex> lock(state_mu_);
  const std::string& s = rebuild_state_.state;
  if (s == "requested" || s == "building" || s == "swapping") {
    ErrorContext ctx;
    ctx.reason = "RebuildInProgress";
    return Status::Conflict(
        "a rebuild is already " + s + " (requested at " + rebuild_state_.requested_at + ")", ctx);
  }
  rebuild_state_ = RebuildState{};
  cancel_ = false;
  rebuild_state_.state = "requested";
  rebuild_state_.requested_at = Now();
  wake_.notify_all();
  return Status::Ok();
}

void Consolidator::Supervise() {
  auto next_stats = Clock::now();
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(wake_mu_);
      wake_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_; });
      if (stopping_) return;
    }
    if (Clock::now() >= next_stats) {
      // Folding without the lock could double-apply events next to a standby that took over:
      // a lost lock session ends the process (it starts again as a standby).
      if (auto st = target_->CheckLock(); !st.ok()) {
        log::Error("lost the single-writer lock; exiting", {{"error", st.message()}});
        std::_Exit(1);
      }
      RefreshStats();
      next_stats = Clock::now() + std::chrono::seconds(1);
    }
    bool live;
    {
      std::lock_guard<std::mutex> lock(live_mu_);
      live = live_ != nullptr;
    }
    if (!live && !frozen_) {  // a failed swap left no live pipeline: keep trying to open it
      if (auto st = OpenLive(); !st.ok()) {
        log::Error("cannot open the live read model", {{"error", st.message()}});
      }
      continue;
    }
    StepRebuild();
  }
}

void Consolidator::RefreshStats() {
  auto stats = stats_source_.Fetch();
  std::vector<FollowerSnapshot> snapshots;
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    if (live_) snapshots = live_->Snapshots();
  }
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (stats.ok()) {
      stats_ = *stats;
      stats_error_.clear();
    } else {
      stats_error_ = stats.status().message();
    }
  }
  if (stats.ok()) VerifySources(*stats);
  Json status = StatusJson();
  for (const auto& s : status["sources"]) {
    Labels l = {{"source", s["stream"].get<std::string>()}};
    metrics_.GetGauge("sidelog_consolidator_lag_events", "Events in the source not yet folded.", l)
        .Set(s["lag"]["events"].get<double>());
    metrics_
        .GetGauge("sidelog_consolidator_lag_seconds",
                  "Age of the oldest event read but not yet folded.", l)
        .Set(s["lag"]["seconds"].get<double>());
    metrics_.GetGauge("sidelog_consolidator_position", "Position of the source's checkpoint.", l)
        .Set(s["position"].get<double>());
    metrics_.GetGauge("sidelog_consolidator_failing", "1 while the source is failing.", l)
        .Set(s["state"] == "failing" ? 1 : 0);
    metrics_
        .GetGauge("sidelog_consolidator_source_reset",
                  "1 while the source is not the stream its checkpoint belongs to (SourceReset).",
                  l)
        .Set(s.contains("reset") ? 1 : 0);
  }
  metrics_.GetGauge("sidelog_consolidator_rebuild_progress", "Progress of the current rebuild.")
      .Set(status["rebuild"].value("progress", 0.0));
}

void Consolidator::StepRebuild() {
  std::string state;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    state = rebuild_state_.state;
  }
  auto fail = [&](const Status& st) {
    log::Error("rebuild failed", {{"error", st.message()}});
    Json progress = rebuild_ ? rebuild_->Progress() : Json::object();
    rebuild_.reset();
    SetRebuild([&](RebuildState& r) {
      r.state = "failed";
      r.error = st.message();
      r.finished_at = Now();
      if (!progress.empty()) r.progress = progress;
    });
  };
  if (cancel_ && (state == "requested" || state == "building")) {
    cancel_ = false;
    Json progress = rebuild_ ? rebuild_->Progress() : Json::object();
    rebuild_.reset();
    Status cleared = target_->ClearRebuild();
    log::Info("rebuild cancelled", {{"progress", progress}});
    SetRebuild([&](RebuildState& r) {
      r.state = "cancelled";
      r.finished_at = Now();
      r.detail.clear();
      if (!cleared.ok()) r.error = "emptying the rebuild slot: " + cleared.message();
      if (!progress.empty()) r.progress = progress;
    });
    return;
  }
  if (state == "requested") {
    auto stats = stats_source_.Fetch();
    if (!stats.ok()) return fail(stats.status());
    rebuild_ = std::make_unique<Rebuild>(config_, target_.get());
    if (auto st = rebuild_->Begin(*stats); !st.ok()) return fail(st);
    log::Info("rebuild started",
              {{"into", target_->Describe(Slot::kRebuild)}, {"progress", rebuild_->Progress()}});
    SetRebuild([&](RebuildState& r) {
      r.state = "building";
      r.started_at = Now();
      r.progress = rebuild_->Progress();
    });
    return;
  }
  if (state != "building" || !rebuild_) return;
  Rebuild::Phase phase = rebuild_->Check();
  SetRebuild([&](RebuildState& r) { r.progress = rebuild_->Progress(); });
  if (phase == Rebuild::Phase::kFailed) return fail(rebuild_->error());
  if (phase != Rebuild::Phase::kCaughtUp) return;
  SetRebuild([&](RebuildState& r) { r.state = "swapping"; });
  Status st = SwapIn();
  if (st.code() == Status::Code::kUnavailable && rebuild_) {
    // The rebuild could not reach the live checkpoints in time (or was cancelled meanwhile):
    // live runs again; retry later, saying why.
    log::Warn("swap postponed", {{"error", st.message()}});
    SetRebuild([&](RebuildState& r) {
      r.state = "building";
      r.detail = "swap postponed: " + st.message();
    });
    return;
  }
  if (!st.ok()) return fail(st);
  log::Info("rebuild swapped in", {{"target", target_->Describe(Slot::kLive)}});
  SetRebuild([&](RebuildState& r) {
    r.state = "done";
    r.finished_at = Now();
  });
}

Status Consolidator::SwapIn() {
  std::unique_ptr<Pipeline> live;
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    live = std::move(live_);
  }
  Result<std::map<std::string, Checkpoint>> targets = std::map<std::string, Checkpoint>();
  if (live) {  // else frozen: nothing folds live, nothing to reach
    live->Stop();
    targets = live->Checkpoints();
  }
  if (targets.ok()) {
    // A reset source's live checkpoint belongs to another stream: nothing to reach there.
    std::lock_guard<std::mutex> lock(state_mu_);
    for (const auto& [stream, check] : checks_) {
      if (!check.reset.is_null()) targets->erase(stream);
    }
  }
  auto give_up = [this] {
    std::lock_guard<std::mutex> lock(wake_mu_);
    return stopping_ || cancel_;
  };
  Status st = targets.ok() ? rebuild_->CatchUpTo(*targets, std::chrono::seconds(30), give_up)
                           : targets.status();
  if (!st.ok()) {
    if (live) live->Resume();
    std::lock_guard<std::mutex> lock(live_mu_);
    live_ = std::move(live);
    return Status::Unavailable(st.message());
  }
  Json progress = rebuild_->Progress();
  rebuild_.reset();  // closes the rebuild slot
  SetRebuild([&](RebuildState& r) { r.progress = progress; });
  {
    auto paused = queries_->Pause();  // no reader holds the live slot open
    live.reset();                     // nor does the old live pipeline
    st = target_->Swap();
  }
  if (st.ok() && frozen_) {  // the new projection is live: it folds, and queries are strict
    frozen_ = false;
    queries_->SetLenient(false);
  }
  Status opened = OpenLive();  // the new content, or the old one when the swap failed
  if (!opened.ok()) {
    log::Error("cannot reopen the live read model; retrying", {{"error", opened.message()}});
  }
  return st;
}

Status Consolidator::RebuildOffline(const std::function<bool(const Json&)>& progress) {
  if (auto st = target_->Lock(); !st.ok()) return st;
  auto stats = stats_source_.Fetch();
  if (!stats.ok()) return stats.status();
  Rebuild rebuild(config_, target_.get());
  if (auto st = rebuild.Begin(*stats); !st.ok()) return st;
  for (;;) {
    Rebuild::Phase phase = rebuild.Check();
    if (!progress(rebuild.Progress())) {
      return Status::Unavailable("stopped before the rebuild finished");
    }
    if (phase == Rebuild::Phase::kFailed) return rebuild.error();
    if (phase == Rebuild::Phase::kCaughtUp) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  rebuild.Close();
  progress(rebuild.Progress());
  return target_->Swap();
}

Json Consolidator::StatusJson() const {
  std::vector<FollowerSnapshot> snapshots;
  bool live;
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    live = live_ != nullptr;
    if (live_) snapshots = live_->Snapshots();
  }
  std::lock_guard<std::mutex> lock(state_mu_);
  Json sources = Json::array();
  int64_t lag_events = 0;
  double lag_seconds = 0;
  const TimeMicros now = NowMicros();
  for (const auto& f : snapshots) {
    // In events when the source counts them (a sidecar), else in positions (JetStream).
    // A reset source's checkpoint belongs to another stream: all of this one is behind.
    auto check = checks_.find(f.stream);
    const bool reset = check != checks_.end() && !check->second.reset.is_null();
    int64_t behind = 0, behind_positions = 0;
    if (auto it = stats_.find(f.stream); it != stats_.end()) {
      const Checkpoint folded = reset ? Checkpoint{} : f.checkpoint;
      behind_positions = std::max<int64_t>(0, it->second.watermark - folded.cursor.position);
      behind = it->second.events >= 0 ? std::max<int64_t>(0, it->second.events - folded.events)
                                      : behind_positions;
    }
    double seconds =
        f.oldest_pending > 0 ? std::max(0.0, static_cast<double>(now - f.oldest_pending) / 1e6) : 0;
    lag_events += behind;
    lag_seconds = std::max(lag_seconds, seconds);
    Json s = {{"stream", f.stream},
              {"position", f.checkpoint.cursor.position},
              {"index", f.checkpoint.cursor.index},
              {"events", f.checkpoint.events},
              {"state", f.state},
              {"lag", {{"events", behind}, {"positions", behind_positions}, {"seconds", seconds}}},
              {"handled", f.handled},
              {"skipped", f.skipped},
              {"deadLettered", f.dead_lettered},
              {"batches", f.batches},
              {"lastError", f.error.empty() ? Json(nullptr) : Json(f.error)}};
    if (f.failed_event) s["failedEvent"] = EventRef(*f.failed_event);
    if (!f.reader_error.empty()) s["readerError"] = f.reader_error;
    if (reset) s["reset"] = check->second.reset;
    sources.push_back(std::move(s));
  }
  Json rebuild = {{"state", rebuild_state_.state}};
  for (const auto& [key, value] :
       {std::pair{"requestedAt", &rebuild_state_.requested_at},
        std::pair{"startedAt", &rebuild_state_.started_at},
        std::pair{"finishedAt", &rebuild_state_.finished_at},
        std::pair{"detail", &rebuild_state_.detail}, std::pair{"error", &rebuild_state_.error}}) {
    if (!value->empty()) rebuild[key] = *value;
  }
  rebuild.update(rebuild_state_.progress);
  if (!rebuild_state_.reason.empty()) rebuild["reason"] = rebuild_state_.reason;
  Json out = {{"name", config_.name},
              {"ready", live},
              {"role", started_ ? "leader" : "standby"},
              {"target", target_->Describe(Slot::kLive)},
              {"onError", config_.on_error == OnError::kSkip ? "skip" : "stop"},
              {"lag", {{"events", lag_events}, {"seconds", lag_seconds}}},
              {"sources", sources},
              {"rebuild", rebuild}};
  if (config_.delivery == Delivery::kSidecar) {
    out["sidecar"] = config_.sidecar_url;
  } else {
    out["jetStream"] = {{"url", config_.nats->url},
                        {"namespace", config_.ns},
                        {"delivery", config_.delivery == Delivery::kPull ? "pull" : "push"}};
  }
  if (!stats_error_.empty()) out["sourceError"] = stats_error_;
  if (frozen_) {
    out["paused"] =
        "the sources, schema or handlers changed: nothing is folded and queries answer from "
        "the previous read model until the rebuild swaps the new one in";
  }
  return out;
}

}  // namespace sidelog::consolidator
