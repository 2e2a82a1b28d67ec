// The sidecar injection of one pod: which EventService it belongs to, and the JSON patch that
// adds the sidelog sidecar, or why the pod is refused. A pure function of the pod, the
// namespace's EventServices and the operator's settings, so every replica of the webhook
// answers the same, and a dry run is answered like a real request.
//
// Only pods labelled sidelog.dev/inject=true reach the webhook (its objectSelector). Such a
// pod is never admitted without its sidecar: when no EventService, several, or one that is not
// Ready would own it, it is denied with a message that names the pod, the candidates and what
// to fix.
//
// The patch (docs/operator.md "Sidecar injection"):
//  - a native sidecar, the first init container: "sidelog" with restartPolicy Always, the
//    image, --config /etc/sidelog/config/sidecar.yaml, a startupProbe on /readyz of the health port
//    (4381) so the app containers start once the sidecar is ready, readiness (/readyz) and
//    liveness (/livez) probes, the service's resources and a restricted securityContext;
//  - the volumes sidelog-config (the ConfigMap sidelog-<service> at /etc/sidelog/config) and
//    sidelog-data (at /var/lib/sidelog: an emptyDir with sizeLimit, or a generic ephemeral
//    volume claim), plus the NATS credentials and TLS Secrets when configured;
//  - SIDELOG_URL=http://127.0.0.1:<port> in every app container that does not set it;
//  - the label sidelog.dev/service=<service>, and the annotations sidelog.dev/config-hash and
//    sidelog.dev/injected=<operator version>.
// A pod that already carries the sidecar is patched only where an app container lacks
// SIDELOG_URL (a container added by a later webhook), so reinvocation is idempotent.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "admission_server.h"
#include "kube_client.h"
#include "nats_identities.h"

namespace sidelog::op {

inline constexpr const char* kInjectLabel = "sidelog.dev/inject";
inline constexpr const char* kServiceLabel = "sidelog.dev/service";
inline constexpr const char* kInjectedAnnotation = "sidelog.dev/injected";
inline constexpr const char* kSidecarContainer = "sidelog";
// The app's port for push deliveries, per pod (overrides the EventService's spec.appPort).
inline constexpr const char* kAppPortAnnotation = "sidelog.dev/app-port";
inline constexpr int kSidecarHealthPort = 4381;

struct InjectorOptions {
  std::string sidecar_image;     // when spec.sidecar.image is unset
  std::string operator_version;  // the value of sidelog.dev/injected
  // Secrets in the pod's namespace, mounted where the rendered config expects them (empty:
  // none): the NATS credentials file and the NATS TLS files (ca.crt, tls.crt, tls.key).
  std::string nats_creds_secret;
  std::string nats_tls_secret;
  // Where they are mounted: the directories of the operator's own --nats-creds and
  // --nats-tls-* files, which the rendered config names.
  std::string nats_creds_dir = "/etc/sidelog/nats/creds";
  std::string nats_tls_dir = "/etc/sidelog/nats/tls";
  // Each service's own NATS identity (docs/security.md): its Secret sidelog-nats-<service>,
  // mounted at nats_identity_dir instead of nats_creds_secret.
  bool nats_identities = false;
  std::string nats_identity_dir = kNatsIdentityDir;
};

// The decision for `pod` (the admission request's object) in namespace `ns`, whose
// EventServices are `services`. `pod_name` names the pod in messages (the request's name, or
// the pod's generateName followed by "*" when the name is not chosen yet).
AdmissionDecision InjectSidecar(const Json& pod, const std::string& ns, const std::string& pod_name,
                                const std::vector<std::shared_ptr<const Json>>& services,
                                const InjectorOptions& options);

// The decision for one admission request (an AdmissionReview's `request`): a Pod being
// created is decided by InjectSidecar with the EventServices `services(namespace)` returns;
// any other request is allowed unchanged.
AdmissionDecision InjectSidecarFor(
    const Json& request,
    const std::function<std::vector<std::shared_ptr<const Json>>(const std::string& ns)>& services,
    const InjectorOptions& options);

// True when `selector` (a metav1.LabelSelector: matchLabels and matchExpressions with In,
// NotIn, Exists, DoesNotExist) selects `labels`. An empty or missing selector selects
// nothing.
bool SelectorMatches(const Json& selector, const Json& labels);

}  // namespace sidelog::op
