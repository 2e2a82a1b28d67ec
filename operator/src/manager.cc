#include "manager.h"

#include "sidelog/log.h"

namespace sidelog::op {

// Forwards to the real client; counts writes and feeds their answers to the informers.
class Manager::ObservingClient : public KubeApi {
 public:
  ObservingClient(Manager* manager, KubeApi* client) : m_(manager), c_(client) {}

  Result<Json> Get(const ResourceType& type, const std::string& ns,
                   const std::string& name) override {
    return c_->Get(type, ns, name);
  }
  Result<Json> List(const ResourceType& type, const std::string& ns,
                    const ListOptions& options) override {
    return c_->List(type, ns, options);
  }
  Result<Json> Create(const ResourceType& type, const std::string& ns,
                      const Json& object) override {
    return Observed(type, "create", "", c_->Create(type, ns, object));
  }
  Result<Json> Update(const ResourceType& type, const Json& object,
                      const std::string& subresource) override {
    return Observed(type, "update", subresource, c_->Update(type, object, subresource));
  }
  Result<Json> MergePatch(const ResourceType& type, const std::string& ns, const std::string& name,
                          const Json& patch, const std::string& subresource) override {
    return Observed(type, "patch", subresource, c_->MergePatch(type, ns, name, patch, subresource));
  }
  Result<Json> Apply(const ResourceType& type, const Json& object,
                     const std::string& subresource) override {
    return Observed(type, "apply", subresource, c_->Apply(type, object, subresource));
  }
  Status Delete(const ResourceType& type, const std::string& ns, const std::string& name) override {
    Count(type, "delete", "");
    return c_->Delete(type, ns, name);
  }
  Status Watch(const ResourceType& type, const std::string& ns, const WatchOptions& options,
               const std::function<bool(WatchEvent&)>& fn) override {
    return c_->Watch(type, ns, options, fn);
  }
  void Shutdown() override { c_->Shutdown(); }

 private:
  void Count(const ResourceType& type, const char* verb, const std::string& subresource) {
    m_->metrics_
        ->GetCounter(
            "sidelog_operator_api_writes_total",
            "Writes to the Kubernetes API, by verb and resource (status writes are "
            "resource <plural>/status).",
            {{"verb", verb},
             {"resource", subresource.empty() ? type.plural : type.plural + "/" + subresource}})
        .Inc();
  }

  Result<Json> Observed(const ResourceType& type, const char* verb, const std::string& subresource,
                        Result<Json> answer) {
    Count(type, verb, subresource);
    if (!answer.ok()) return answer;
    for (const auto& informer : m_->informers_) {
      const ResourceType& t = informer->type();
      if (t.group == type.group && t.plural == type.plural) informer->Observe(*answer);
    }
    return answer;
  }

  Manager* m_;
  KubeApi* c_;
};

Manager::Manager(KubeApi* client, std::string ns, Metrics* metrics)
    : client_(client),
      ns_(std::move(ns)),
      metrics_(metrics),
      writer_(std::make_unique<ObservingClient>(this, client)) {}

Manager::~Manager() { Stop(); }

KubeApi* Manager::client() { return writer_.get(); }

Informer* Manager::InformerFor(const ResourceType& type, const Selector& selector) {
  return InformerFor(type, selector, ns_);
}

Informer* Manager::InformerFor(const ResourceType& type, const Selector& selector,
                               const std::string& ns) {
  // Cluster-scoped kinds are watched everywhere.
  const std::string where = type.namespaced ? ns : "";
  for (const auto& i : informers_) {
    if (i->type().group == type.group && i->type().plural == type.plural &&
        i->selector() == selector && i->ns() == where) {
      return i.get();
    }
  }
  informers_.push_back(std::make_unique<Informer>(client_, type, where, selector, metrics_));
  return informers_.back().get();
}

Controller* Manager::AddController(const ResourceType& type, Reconciler* reconciler,
                                   ControllerOptions options, Informer* informer) {
  controllers_.push_back(std::make_unique<Controller>(
      type.kind, informer ? informer : InformerFor(type), reconciler, metrics_, options));
  return controllers_.back().get();
}

void Manager::Start() {
  for (const auto& i : informers_) i->Start();
  starter_ = std::thread([this] {
    for (const auto& i : informers_) {
      while (!stop_ && !i->WaitForSync(std::chrono::milliseconds(200))) {
      }
      if (stop_) return;
    }
    for (const auto& c : controllers_) c->Start();
    started_ = true;
    log::Info("caches synced; controllers started",
              {{"informers", static_cast<int64_t>(informers_.size())},
               {"controllers", static_cast<int64_t>(controllers_.size())}});
  });
}

bool Manager::WaitUntilReady(std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!started_ && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return started_;
}

void Manager::StopControllers() {
  stop_ = true;
  if (starter_.joinable()) starter_.join();
  for (const auto& c : controllers_) c->Stop();
  started_ = false;
}

void Manager::Stop() {
  StopControllers();
  client_->Shutdown();
  for (const auto& i : informers_) i->Stop();
}

}  // namespace sidelog::op
