#include "pipeline.h"

namespace sidelog::consolidator {

Result<std::unique_ptr<Pipeline>> Pipeline::Open(const ConsolidatorConfig& config,
                                                 Projection::Connect connect, Metrics* metrics) {
  auto projection = Projection::Open(config, std::move(connect));
  if (!projection.ok()) return projection.status();
  std::unique_ptr<Pipeline> p(new Pipeline());
  p->projection_ = std::move(projection).value();
  for (const auto& source : config.sources) {
    p->followers_.push_back(
        std::make_unique<Follower>(config, source, p->projection_.get(), metrics));
  }
  return p;
}

Pipeline::~Pipeline() { Stop(); }

void Pipeline::Start() {
  for (const auto& f : followers_) StartSource(f->stream());
}

Follower* Pipeline::Find(const std::string& stream) {
  for (auto& f : followers_) {
    if (f->stream() == stream) return f.get();
  }
  return nullptr;
}

void Pipeline::StartSource(const std::string& stream) {
  Follower* f = Find(stream);
  if (f == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!running_.insert(stream).second) return;
  }
  f->Start();
}

void Pipeline::HaltSource(const std::string& stream, const std::string& why) {
  Follower* f = Find(stream);
  if (f == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_.erase(stream);
  }
  f->Halt(why);
}

void Pipeline::Stop() {
  for (auto& f : followers_) f->Stop();
}

void Pipeline::Resume() {
  std::set<std::string> running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    running = running_;
  }
  for (auto& f : followers_) {
    if (running.count(f->stream())) f->Start();
  }
}

bool Pipeline::Running(const std::string& stream) const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_.count(stream) > 0;
}

std::vector<FollowerSnapshot> Pipeline::Snapshots() const {
  std::vector<FollowerSnapshot> out;
  for (const auto& f : followers_) out.push_back(f->Snapshot());
  return out;
}

Result<std::map<std::string, Checkpoint>> Pipeline::Checkpoints() {
  std::map<std::string, Checkpoint> out;
  for (const auto& f : followers_) {
    const std::string& stream = f->stream();
    auto cp = projection_->LoadCheckpoint(stream);
    if (!cp.ok()) return cp.status();
    out[stream] = *cp;
  }
  return out;
}

}  // namespace sidelog::consolidator
