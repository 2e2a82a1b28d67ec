#include "operator.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "sidelog/log.h"

namespace sidelog::op {

using web::http::http_request;
using web::http::status_codes;

Operator::Operator(OperatorOptions options) : options_(std::move(options)) {}

Operator::~Operator() { Stop(); }

Status Operator::Start() {
  auto kube = ResolveKubeConfig(options_.kubeconfig);
  if (!kube.ok()) return kube.status();
  if (options_.election.ns.empty()) options_.election.ns = kube->default_namespace;
  client_ = std::make_unique<KubeClient>(*kube);
  auto& certs = options_.webhook.certificates;
  if (certs.ns.empty()) certs.ns = options_.election.ns;
  certs.dns_names = ServiceDnsNames(options_.webhook.service, certs.ns);
  for (const auto& host : options_.webhook.extra_hosts) {
    bool ip = host.find_first_not_of("0123456789.") == std::string::npos ||
              host.find(':') != std::string::npos;
    (ip ? certs.ip_addresses : certs.dns_names).push_back(host);
  }

  if (!options_.nats_identities.empty()) {
    if (auto s = OpenIdentities(); !s.ok()) return s;
  }

  auto& connected =
      metrics_.GetGauge("sidelog_operator_nats_connected", "1 while connected to NATS.");
  auto js = JetStream::Connect(options_.nats, [this, &connected](bool up) {
    connected.Set(up ? 1 : 0);
    log::Info(up ? "connected to NATS" : "disconnected from NATS", {{"url", options_.nats.url}});
    // Back from an outage: look at every stream now rather than at the next retry.
    if (up && running_) streams_controller_->EnqueueAll();
  });
  if (!js.ok()) return js.status();
  js_ = std::move(*js);
  connected.Set(js_->connected() ? 1 : 0);

  try {
    health_ = std::make_unique<web::http::experimental::listener::http_listener>(
        web::uri("http://" + options_.health_listen));
    health_->support([this](const http_request& r) { Serve(r); });
    health_->open().wait();
  } catch (const std::exception& e) {
    return Status::Unavailable("cannot listen on " + options_.health_listen + ": " + e.what());
  }

  if (!options_.webhook.listen.empty()) {
    options_.webhook.watch_namespace = options_.watch_namespace;
    webhook_ = std::make_unique<SidecarWebhook>(client_.get(), options_.webhook, &metrics_);
    if (auto s = webhook_->Start(); !s.ok()) return s;
  }

  auto& leader =
      metrics_.GetGauge("sidelog_operator_leader", "1 while this process is the leader.");
  if (!options_.leader_elect) {
    leader.Set(1);
    StartControllers();
    return Status::Ok();
  }
  elector_ = std::make_unique<LeaderElector>(client_.get(), options_.election);
  elector_thread_ = std::thread([this, &leader] {
    elector_->Run(
        [this, &leader] {
          leader.Set(1);
          StartControllers();
        },
        [&leader](bool lost) {
          leader.Set(0);
          if (lost) {
            log::Error("exiting: leadership lost");
            _exit(1);
          }
        });
  });
  return Status::Ok();
}

Status Operator::OpenIdentities() {
  auto ids = NatsIdentities::Open(
      client_.get(), {options_.election.ns, options_.nats_identities, options_.nats_resolver_dir});
  if (!ids.ok()) return ids.status();
  identities_ = std::move(ids).value();
  // nats.c reads credentials from files: the operator's own, in a directory only it can read.
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/sidelog-operator-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    return Status::Unavailable("cannot create a directory for the NATS credentials under " + templ);
  }
  creds_dir_ = templ;
  auto write = [this](const std::string& file, const std::string& text) {
    std::string path = creds_dir_ + "/" + file;
    std::ofstream out(path, std::ios::trunc);
    out << text;
    out.close();
    std::filesystem::permissions(
        path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    return path;
  };
  options_.nats.creds_file = write("operator.creds", identities_->OperatorCreds());
  options_.nats.user.clear();
  options_.nats.password.clear();
  options_.nats.token.clear();
  NatsConfig system = options_.nats;
  system.creds_file = write("system.creds", identities_->SystemCreds());
  auto js = JetStream::Connect(system, [this](bool up) {
    if (!up) return;
    std::lock_guard<std::mutex> lock(pusher_mu_);
    force_push_ = true;  // a restarted server may have lost what it was given
    pusher_cv_.notify_all();
  });
  if (!js.ok()) return js.status();
  system_js_ = std::move(js).value();
  identities_->SetSystemConnection(system_js_.get());
  // What injected sidecars read: their own credentials, mounted from their Secret.
  options_.webhook.injector.nats_identities = true;
  log::Info("NATS identities on",
            {{"authority", options_.election.ns + "/" + options_.nats_identities}});
  return Status::Ok();
}

void Operator::PushAccounts() {
  std::unique_lock<std::mutex> lock(pusher_mu_);
  while (!pusher_stop_) {
    const bool force = force_push_;
    force_push_ = false;
    lock.unlock();
    Status s = system_js_->connected() ? identities_->Push(force) : Status::Ok();
    lock.lock();
    if (!s.ok()) {
      force_push_ = force_push_ || force;
      log::Warn("NATS account push failed; retrying", {{"error", s.message()}});
    }
    pusher_cv_.wait_for(lock, std::chrono::seconds(s.ok() ? 10 : 2),
                        [this] { return pusher_stop_ || force_push_; });
  }
}

void Operator::StartControllers() {
  log::Info("starting controllers",
            {{"namespace", options_.watch_namespace.empty() ? "*" : options_.watch_namespace}});
  manager_ = std::make_unique<Manager>(client_.get(), options_.watch_namespace, &metrics_);
  KubeApi* writer = manager_->client();
  recorder_ =
      std::make_unique<EventRecorder>(writer, "sidelog-operator", options_.election.identity);

  Informer* streams = manager_->InformerFor(kEventStreams);
  streams_reconciler_ =
      std::make_unique<EventStreamReconciler>(writer, streams, js_.get(), recorder_.get());
  streams_controller_ =
      manager_->AddController(kEventStreams, streams_reconciler_.get(), options_.controller);

  EventServiceOptions service_options;
  service_options.cycles = options_.dependency_cycles;
  service_options.sidecar.nats = options_.nats;
  if (identities_) {
    service_options.identities = identities_.get();
    options_.consolidators.identities = identities_.get();
    options_.consolidators.workload.nats_identities = true;
    service_options.sidecar.nats.creds_file =
        options_.webhook.injector.nats_identity_dir + "/" + kNatsCredsKey;
    pusher_ = std::thread([this] { PushAccounts(); });
  }
  services_reconciler_ = std::make_unique<EventServiceReconciler>(
      writer, manager_->InformerFor(kEventServices), streams,
      manager_->InformerFor(kConfigMaps, {"app.kubernetes.io/managed-by=sidelog-operator", ""}),
      webhook_ ? manager_->InformerFor(kPods, InjectedPodSelector()) : nullptr, recorder_.get(),
      service_options);
  services_reconciler_->WatchDependencies(
      manager_->AddController(kEventServices, services_reconciler_.get(), options_.controller));

  const Selector owned = ConsolidatorObjectSelector();
  consolidators_reconciler_ = std::make_unique<ConsolidatorReconciler>(
      writer, manager_->InformerFor(kConsolidators), manager_->InformerFor(kConfigMaps, owned),
      manager_->InformerFor(kStatefulSets, owned), manager_->InformerFor(kDeployments, owned),
      manager_->InformerFor(kServices, owned), manager_->InformerFor(kPods, owned), recorder_.get(),
      options_.consolidators);
  consolidators_reconciler_->WatchOwned(manager_->AddController(
      kConsolidators, consolidators_reconciler_.get(), options_.controller));

  if (webhook_) {
    // The Secret, and the webhook configuration whose caBundle must hold its CA.
    const auto& certs = options_.webhook.certificates;
    Informer* secret =
        manager_->InformerFor(kSecrets, {"", "metadata.name=" + certs.secret}, certs.ns);
    Informer* configuration = manager_->InformerFor(kMutatingWebhookConfigurations,
                                                    {"", "metadata.name=" + certs.configuration});
    certificates_reconciler_ =
        std::make_unique<WebhookCertificateReconciler>(writer, secret, certs);
    Controller* c = manager_->AddController(kSecrets, certificates_reconciler_.get(),
                                            options_.controller, secret);
    const std::string key = certificates_reconciler_->SecretKey();
    c->Watches(configuration, [key](const ObjectEvent&) { return std::vector<std::string>{key}; });
    c->Enqueue(key);  // it may not exist yet: nothing else would bring it
  }

  manager_->Start();
  running_ = true;
}

bool Operator::Ready() const {
  // Every replica answers admissions: not ready until it can.
  if (webhook_ && !webhook_->Serving()) return false;
  // A standby is ready: it is doing its job, which is waiting.
  if (!running_) return elector_ && !elector_->IsLeader();
  return manager_->Ready();
}

void Operator::Serve(const http_request& request) {
  const std::string path = request.request_uri().path();
  if (path == "/healthz" || path == "/livez") {
    request.reply(status_codes::OK, "ok\n");
  } else if (path == "/readyz") {
    bool ready = Ready();
    request.reply(ready ? status_codes::OK : status_codes::ServiceUnavailable,
                  ready ? "ok\n"
                  : webhook_ && !webhook_->Serving()
                      ? "the webhook has no certificate or its caches are not synced\n"
                      : "caches not synced\n");
  } else if (path == "/metrics") {
    request.reply(status_codes::OK, metrics_.Render(), "text/plain; version=0.0.4");
  } else {
    request.reply(status_codes::NotFound, "not found\n");
  }
}

void Operator::Stop() {
  if (manager_) manager_->StopControllers();  // in-flight reconciles finish
  if (elector_) elector_->Stop();
  if (elector_thread_.joinable()) elector_thread_.join();  // releases the Lease
  running_ = false;
  if (pusher_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(pusher_mu_);
      pusher_stop_ = true;
      pusher_cv_.notify_all();
    }
    pusher_.join();
  }
  js_.reset();  // no more NATS callbacks
  system_js_.reset();
  if (!creds_dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(creds_dir_, ignored);
    creds_dir_.clear();
  }
  if (client_) client_->Shutdown();
  if (manager_) manager_->Stop();
  if (webhook_) webhook_->Stop();
  if (health_) {
    try {
      health_->close().wait();
    } catch (const std::exception&) {
    }
    health_.reset();
  }
  manager_.reset();
  webhook_.reset();
  certificates_reconciler_.reset();
  services_reconciler_.reset();
  streams_reconciler_.reset();
}

}  // namespace sidelog::op
