// SidecarWebhook: the admission webhook that injects the sidelog sidecar, as every replica of
// the operator runs it (leader or not, so admission does not wait for a leader election).
//
// It keeps two informers of its own for as long as the process runs: the EventServices (which
// service a pod belongs to, whether it is Ready, its rendered ConfigMap) and the webhook's TLS
// Secret, whose tls.crt and tls.key it serves, picking up each renewal without a restart
// (WebhookCertificateReconciler writes them on the leader). Serving() is true once the caches
// are synced and a certificate is loaded; the operator's /readyz waits for it, so a replica
// that cannot answer admissions is never behind the webhook's Service.
//
// Only pod CREATE requests are decided (InjectSidecar); anything else is allowed unchanged.
// Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "admission_server.h"
#include "informer.h"
#include "sidecar_injector.h"
#include "webhook_certificates.h"

namespace sidelog::op {

struct SidecarWebhookOptions {
  std::string listen = "0.0.0.0:9443";
  // The webhook's Service: its DNS names go into the serving certificate, with extra_hosts
  // (names or IP addresses, e.g. 127.0.0.1 for a webhook reached by URL).
  std::string service = "sidelog-webhook";
  std::vector<std::string> extra_hosts;
  std::string watch_namespace;  // EventServices of this namespace (every namespace when empty)
  WebhookCertificateOptions certificates;
  InjectorOptions injector;
};

class SidecarWebhook {
 public:
  SidecarWebhook(KubeApi* client, SidecarWebhookOptions options, Metrics* metrics);
  ~SidecarWebhook();

  // Starts the informers and the listener; Unavailable when the address cannot be bound.
  Status Start();
  // Stops the listener and the informers (shut the client down first for a prompt stop).
  void Stop();
  bool Serving() const;

  // The decision for one admission request (exposed for tests).
  AdmissionDecision Decide(const Json& request) const;

 private:
  void LoadCertificate(const Json& secret);

  KubeApi* client_;
  const SidecarWebhookOptions options_;
  Informer services_;
  Informer secret_;
  std::unique_ptr<AdmissionServer> server_;
};

}  // namespace sidelog::op
