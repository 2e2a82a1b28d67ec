// WebhookCertificateReconciler: the admission webhook's TLS, managed by the leader, with no
// gap in admission while certificates rotate.
//
// One Secret (type kubernetes.io/tls, in the operator's namespace) holds it all:
//   ca.crt, ca.key        the current CA, which signs the serving certificate;
//   ca-previous.crt       the CA before it, kept while it is valid so certificates it signed
//                         are still trusted during a rotation;
//   tls.crt, tls.key      the serving certificate, for <service>.<namespace>.svc and the
//                         extra hosts (127.0.0.1 for tests).
// Every replica serves tls.crt from the Secret (SidecarWebhook); the leader reconciles it:
//   1. no CA, an unreadable one, or one past two thirds of its validity: a new CA, the old one
//      kept as ca-previous.crt;
//   2. the caBundle of every webhook of the MutatingWebhookConfiguration is ca.crt followed by
//      ca-previous.crt, patched (server-side apply) when it differs;
//   3. a serving certificate that is missing, does not chain to ca.crt, lacks a host, or is
//      past two thirds of its validity is reissued from ca.crt, but only once the caBundle has
//      held ca.crt for `propagation` (the API server reads webhook configurations from a
//      watch), so no handshake ever meets a CA the API server does not trust yet.
// It requeues itself for the next renewal, and a change of the Secret or of the webhook
// configuration (deleted and recreated by a helm upgrade) brings it back at once.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "controller.h"
#include "informer.h"
#include "kube_client.h"

namespace sidelog::op {

extern const ResourceType kSecrets;
extern const ResourceType kMutatingWebhookConfigurations;

struct WebhookCertificateOptions {
  std::string ns;                                               // the Secret's namespace
  std::string secret = "sidelog-webhook-tls";                   // the Secret's name
  std::string configuration = "sidelog-sidecar-injector";       // MutatingWebhookConfiguration
  std::vector<std::string> dns_names;                           // of the serving certificate
  std::vector<std::string> ip_addresses;                        // of the serving certificate
  std::chrono::seconds validity{std::chrono::hours(24 * 365)};  // of the CA and serving cert
  std::chrono::milliseconds propagation{std::chrono::seconds(5)};
};

// One key of a Secret's data, decoded ("" when the Secret, the key or its base64 is missing).
std::string SecretValue(const Json* secret, const char* key);

// The DNS names a Service's serving certificate needs: name, name.ns, name.ns.svc and
// name.ns.svc.cluster.local.
std::vector<std::string> ServiceDnsNames(const std::string& service, const std::string& ns);

class WebhookCertificateReconciler : public Reconciler {
 public:
  // `secrets` holds the Secret (and may hold nothing else); `client` is the Manager's.
  WebhookCertificateReconciler(KubeApi* client, Informer* secrets,
                               WebhookCertificateOptions options);

  // `key` is SecretKey(); any other key is ignored.
  Result<ReconcileResult> Reconcile(const std::string& key) override;

  // "<ns>/<secret>".
  std::string SecretKey() const { return options_.ns + "/" + options_.secret; }

 private:
  struct Contents;
  Status WriteSecret(const Json* existing, const Contents& c);
  // Patches the caBundle when it differs. True when it held `bundle` already (or there is no
  // webhook configuration, so nothing calls the webhook).
  Result<bool> EnsureCaBundle(const std::string& bundle);

  KubeApi* client_;
  Informer* secrets_;
  const WebhookCertificateOptions options_;
  // When the caBundle was first seen holding the current CA (steady clock).
  std::string bundle_seen_;
  std::chrono::steady_clock::time_point bundle_seen_at_{};
};

}  // namespace sidelog::op
