#include "sidecar_webhook.h"

#include "dependency_graph.h"
#include "sidelog/log.h"

namespace sidelog::op {

SidecarWebhook::SidecarWebhook(KubeApi* client, SidecarWebhookOptions options, Metrics* metrics)
    : client_(client),
      options_(std::move(options)),
      services_(client, kEventServices, options_.watch_namespace, {}, metrics),
      secret_(client, kSecrets, options_.certificates.ns,
              {"", "metadata.name=" + options_.certificates.secret}, metrics) {
  secret_.AddHandler([this](const ObjectEvent& event) {
    if (event.type != ObjectEvent::Type::kDeleted) LoadCertificate(*event.object);
  });
  server_ = std::make_unique<AdmissionServer>(
      options_.listen, [this](const Json& request) { return Decide(request); }, metrics);
}

SidecarWebhook::~SidecarWebhook() { Stop(); }

Status SidecarWebhook::Start() {
  services_.Start();
  secret_.Start();
  return server_->Start();
}

void SidecarWebhook::Stop() {
  if (server_) server_->Stop();
  services_.Stop();
  secret_.Stop();
}

bool SidecarWebhook::Serving() const {
  return server_->Serving() && services_.HasSynced() && secret_.HasSynced();
}

void SidecarWebhook::LoadCertificate(const Json& secret) {
  CertificatePair pair{SecretValue(&secret, "tls.crt"), SecretValue(&secret, "tls.key")};
  if (pair.empty() || pair == server_->Certificate()) return;
  if (auto s = server_->SetCertificate(pair); !s.ok()) {
    log::Warn("webhook certificate not loaded; serving the previous one",
              {{"secret", ObjectKey(secret)}, {"error", s.message()}});
    return;
  }
  log::Info("webhook certificate loaded", {{"secret", ObjectKey(secret)}});
}

AdmissionDecision SidecarWebhook::Decide(const Json& request) const {
  return InjectSidecarFor(
      request, [this](const std::string& ns) { return services_.List(ns); }, options_.injector);
}

}  // namespace sidelog::op
