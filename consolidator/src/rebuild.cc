#include "rebuild.h"

#include <thread>

namespace sidelog::consolidator {

using Clock = std::chrono::steady_clock;

Rebuild::Rebuild(const ConsolidatorConfig& config, Target* target)
    : config_(config), target_(target) {}

Rebuild::~Rebuild() { Close(); }

Status Rebuild::Begin(const std::map<std::string, StreamStats>& totals) {
  totals_ = totals;
  // Progress in events when the source counts them (a sidecar), else in positions (JetStream).
  by_position_ = false;
  for (const auto& [stream, st] : totals) by_position_ = by_position_ || st.events < 0;
  int64_t total = 0;
  for (const auto& s : config_.sources) {
    if (auto it = totals.find(s.stream); it != totals.end()) {
      total += by_position_ ? it->second.watermark : it->second.events;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_total_ = total;
    events_done_ = 0;
  }
  if (auto st = target_->ClearRebuild(); !st.ok()) return st;
  auto pipeline = Pipeline::Open(
      config_, [t = target_] { return t->OpenWriter(Slot::kRebuild); }, nullptr);
  if (!pipeline.ok()) return pipeline.status();
  pipeline_ = std::move(pipeline).value();
  if (auto st = pipeline_->projection().SaveMeta("projection", ProjectionHashOf(config_));
      !st.ok()) {
    return st;
  }
  // The fresh slot's checkpoints belong to the sources as they are now.
  for (const auto& [stream, st] : totals) {
    if (st.identity.empty()) continue;
    if (auto saved = pipeline_->projection().SaveIdentity(stream, st.identity); !saved.ok()) {
      return saved;
    }
  }
  pipeline_->Start();
  return Status::Ok();
}

Rebuild::Phase Rebuild::Check() {
  if (!pipeline_) return Phase::kFailed;
  bool caught_up = true;
  int64_t done = 0;
  for (const auto& f : pipeline_->Snapshots()) {
    const int64_t mine = by_position_ ? f.checkpoint.cursor.position : f.checkpoint.events;
    done += mine;
    if (f.failed_event) {
      error_ = Status::Rejected("the rebuild stopped: " + f.error);
      return Phase::kFailed;
    }
    auto total = totals_.find(f.stream);
    int64_t goal = total == totals_.end() ? 0
                   : by_position_         ? total->second.watermark
                                          : total->second.events;
    caught_up = caught_up && f.idle && mine >= goal;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_done_ = done;
  }
  return caught_up ? Phase::kCaughtUp : Phase::kBuilding;
}

Status Rebuild::CatchUpTo(const std::map<std::string, Checkpoint>& targets,
                          std::chrono::milliseconds timeout, const std::function<bool()>& give_up) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto mine = pipeline_->Checkpoints();
    if (!mine.ok()) return mine.status();
    std::string behind;
    for (const auto& [stream, goal] : targets) {
      const Cursor at = mine->count(stream) ? mine->at(stream).cursor : Cursor{};
      if (at < goal.cursor) {
        behind += (behind.empty() ? "" : ", ") + stream + " at position " +
                  std::to_string(at.position) + " of " + std::to_string(goal.cursor.position);
      }
    }
    if (behind.empty()) return Status::Ok();
    if (give_up()) return Status::Unavailable("the swap was interrupted (" + behind + ")");
    if (Clock::now() >= deadline) {
      return Status::Unavailable("the rebuild did not reach the live checkpoints in " +
                                 std::to_string(timeout.count()) + " ms (" + behind + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void Rebuild::Close() {
  if (!pipeline_) return;
  Check();  // the final count
  pipeline_.reset();
}

Json Rebuild::Progress() const {
  std::lock_guard<std::mutex> lock(mu_);
  double fraction =
      events_total_ == 0
          ? 1.0
          : std::min(1.0, static_cast<double>(events_done_) / static_cast<double>(events_total_));
  if (by_position_) {
    return {
        {"positionsDone", events_done_}, {"positionsTotal", events_total_}, {"progress", fraction}};
  }
  return {{"eventsDone", events_done_}, {"eventsTotal", events_total_}, {"progress", fraction}};
}

}  // namespace sidelog::consolidator
