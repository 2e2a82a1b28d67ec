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
  for (auto& f : followers_) f->Start();
}

void Pipeline::Stop() {
  for (auto& f : followers_) f->Stop();
}

std::vector<FollowerSnapshot> Pipeline::Snapshots() const {
  std::vector<FollowerSnapshot> out;
  for (const auto& f : followers_) out.push_back(f->Snapshot());
  return out;
}

Result<std::map<std::string, Checkpoint>> Pipeline::Checkpoints() {
  std::map<std::string, Checkpoint> out;
  for (const auto& f : followers_) {
    const std::string& stream = f->Snapshot().stream;
    auto cp = projection_->LoadCheckpoint(stream);
    if (!cp.ok()) return cp.status();
    out[stream] = *cp;
  }
  return out;
}

}  // namespace sidelog::consolidator
