#include "webhook_certificates.h"

#include <algorithm>

#include "sidelog/base64.h"
#include "sidelog/log.h"
#include "webhook_tls.h"

namespace sidelog::op {

const ResourceType kSecrets{"", "v1", "secrets", "Secret", true};
const ResourceType kMutatingWebhookConfigurations{"admissionregistration.k8s.io", "v1",
                                                  "mutatingwebhookconfigurations",
                                                  "MutatingWebhookConfiguration", false};

namespace {

using Clock = std::chrono::system_clock;

// Valid now, not due for renewal, and made for no longer than `validity` (with a margin for the
// backdated start): a lowered --webhook-cert-validity renews what a longer one made.
bool Fresh(const std::string& cert_pem, Clock::time_point now, std::chrono::seconds validity) {
  auto info = InspectCertificate(cert_pem);
  return info.ok() && info->not_before <= now && now < info->not_after && !RenewalDue(*info, now) &&
         info->not_after - info->not_before <= validity + std::chrono::minutes(2);
}

bool Unexpired(const std::string& cert_pem, Clock::time_point now) {
  auto info = InspectCertificate(cert_pem);
  return info.ok() && now < info->not_after;
}

// When `cert_pem` is due for renewal (now when it cannot be read).
Clock::time_point RenewalTime(const std::string& cert_pem) {
  auto info = InspectCertificate(cert_pem);
  if (!info.ok()) return Clock::now();
  return info->not_before + (info->not_after - info->not_before) * 2 / 3;
}

// A write that lost a race (the Secret was created or changed since the cache was read, by this
// reconciler a moment ago or by another leader in a hand-over) is not a failure: the next
// reconcile reads what won. Anything else is.
Result<ReconcileResult> Retry(const Status& s) {
  if (s.code() != Status::Code::kConflict) return s;
  log::Debug("webhook Secret changed meanwhile; reading it again", {{"error", s.message()}});
  return ReconcileResult{std::chrono::milliseconds(200)};
}

}  // namespace

std::string SecretValue(const Json* secret, const char* key) {
  if (!secret) return "";
  auto data = secret->value("data", Json::object());
  if (!data.contains(key) || !data[key].is_string()) return "";
  auto decoded = Base64Decode(data[key].get<std::string>(), key);
  return decoded.ok() ? *decoded : "";
}

std::vector<std::string> ServiceDnsNames(const std::string& service, const std::string& ns) {
  return {service, service + "." + ns, service + "." + ns + ".svc",
          service + "." + ns + ".svc.cluster.local"};
}

struct WebhookCertificateReconciler::Contents {
  CertificatePair ca;
  std::string ca_previous;
  CertificatePair serving;
  std::string Bundle() const { return ca.cert_pem + ca_previous; }
};

WebhookCertificateReconciler::WebhookCertificateReconciler(KubeApi* client, Informer* secrets,
                                                           WebhookCertificateOptions options)
    : client_(client), secrets_(secrets), options_(std::move(options)) {}

Result<ReconcileResult> WebhookCertificateReconciler::Reconcile(const std::string& key) {
  if (key != SecretKey()) return ReconcileResult{};
  auto existing = secrets_->Get(key);
  const Json* secret = existing.get();
  const auto now = Clock::now();

  Contents c{{SecretValue(secret, "ca.crt"), SecretValue(secret, "ca.key")},
             SecretValue(secret, "ca-previous.crt"),
             {SecretValue(secret, "tls.crt"), SecretValue(secret, "tls.key")}};
  bool changed = false;

  // 1. The CA.
  if (!Fresh(c.ca.cert_pem, now, options_.validity) || c.ca.key_pem.empty()) {
    auto ca = MakeCertificateAuthority("sidelog-webhook-ca", options_.validity);
    if (!ca.ok()) return ca.status();
    c.ca_previous = Unexpired(c.ca.cert_pem, now) ? c.ca.cert_pem : "";
    c.ca = *ca;
    changed = true;
    log::Info("webhook CA made", {{"secret", key}, {"keeps_previous", !c.ca_previous.empty()}});
  }
  if (!c.ca_previous.empty() && !Unexpired(c.ca_previous, now)) {
    c.ca_previous.clear();
    changed = true;
  }
  if (changed) {
    // The CA goes into the Secret before the caBundle names it, so a crash in between leaves
    // a Secret whose CA the next reconcile puts into the bundle, not a bundle with a lost CA.
    if (auto s = WriteSecret(secret, c); !s.ok()) return Retry(s);
  }

  // 2. The caBundle.
  auto held = EnsureCaBundle(c.Bundle());
  if (!held.ok()) return held.status();
  auto steady_now = std::chrono::steady_clock::now();
  if (!*held || bundle_seen_ != c.Bundle()) {
    bundle_seen_ = c.Bundle();
    bundle_seen_at_ = steady_now;
  }

  // 3. The serving certificate.
  std::vector<std::string> hosts = options_.dns_names;
  hosts.insert(hosts.end(), options_.ip_addresses.begin(), options_.ip_addresses.end());
  bool serving_ok = Fresh(c.serving.cert_pem, now, options_.validity);
  for (const auto& host : hosts) {
    if (!serving_ok) break;
    serving_ok =
        VerifyServingCertificate(c.serving.cert_pem, c.serving.key_pem, c.ca.cert_pem, host, now)
            .ok();
  }
  if (!serving_ok) {
    auto waited = steady_now - bundle_seen_at_;
    if (waited < options_.propagation && !c.serving.empty()) {
      // The API server may not trust the new CA yet; keep serving the old certificate.
      return ReconcileResult{
          std::chrono::duration_cast<std::chrono::milliseconds>(options_.propagation - waited) +
          std::chrono::milliseconds(10)};
    }
    auto serving =
        MakeServingCertificate(c.ca, options_.dns_names, options_.ip_addresses, options_.validity);
    if (!serving.ok()) return serving.status();
    c.serving = *serving;
    if (auto s = WriteSecret(secrets_->Get(key).get(), c); !s.ok()) return Retry(s);
    log::Info("webhook serving certificate issued",
              {{"secret", key}, {"hosts", static_cast<int64_t>(hosts.size())}});
  }

  // Back at the first renewal or expiry of a previous CA, or in a minute at the latest (a
  // hand-edited caBundle is repaired by the watch at once, an unreadable API within that).
  auto next = std::min({RenewalTime(c.ca.cert_pem), RenewalTime(c.serving.cert_pem),
                        Clock::now() + std::chrono::minutes(1)});
  if (!c.ca_previous.empty()) {
    auto info = InspectCertificate(c.ca_previous);
    if (info.ok()) next = std::min(next, info->not_after);
  }
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now());
  log::Debug("webhook certificates checked", {{"secret", key}, {"nextCheckMs", wait.count()}});
  return ReconcileResult{std::max(wait, std::chrono::milliseconds(100))};
}

Status WebhookCertificateReconciler::WriteSecret(const Json* existing, const Contents& c) {
  Json data = {{"ca.crt", Base64Encode(c.ca.cert_pem)},
               {"ca.key", Base64Encode(c.ca.key_pem)},
               {"tls.crt", Base64Encode(c.serving.cert_pem)},
               {"tls.key", Base64Encode(c.serving.key_pem)}};
  if (!c.ca_previous.empty()) data["ca-previous.crt"] = Base64Encode(c.ca_previous);
  if (existing) {
    // Replace the data as a whole (a merge patch would keep a dropped ca-previous.crt),
    // guarded by the version read, so two leaders in a hand-over never interleave.
    Json updated = *existing;
    updated["data"] = data;
    auto r = client_->Update(kSecrets, updated);
    return r.ok() ? Status::Ok() : r.status();
  }
  Json secret = {{"apiVersion", "v1"},
                 {"kind", "Secret"},
                 {"type", "kubernetes.io/tls"},
                 {"metadata",
                  {{"name", options_.secret},
                   {"namespace", options_.ns},
                   {"labels",
                    {{"app.kubernetes.io/managed-by", "sidelog-operator"},
                     {"app.kubernetes.io/component", "webhook"}}}}},
                 {"data", data}};
  auto r = client_->Create(kSecrets, options_.ns, secret);
  return r.ok() ? Status::Ok() : r.status();
}

Result<bool> WebhookCertificateReconciler::EnsureCaBundle(const std::string& bundle) {
  auto config = client_->Get(kMutatingWebhookConfigurations, "", options_.configuration);
  if (!config.ok()) {
    if (config.status().code() == Status::Code::kNotFound) {
      // Installed without the chart's webhook configuration: serving works, nothing to patch.
      // No API server calls this webhook, so none waits for the CA either.
      log::Warn("no MutatingWebhookConfiguration to give the webhook CA to",
                {{"name", options_.configuration}});
      return true;
    }
    return config.status();
  }
  const std::string encoded = Base64Encode(bundle);
  Json webhooks = Json::array();
  bool held = true;
  for (const auto& w : config->value("webhooks", Json::array())) {
    std::string current = w.value("/clientConfig/caBundle"_json_pointer, std::string());
    if (current != encoded) held = false;
    webhooks.push_back({{"name", w.value("name", "")}, {"clientConfig", {{"caBundle", encoded}}}});
  }
  if (held) return true;
  Json apply = {{"apiVersion", kMutatingWebhookConfigurations.ApiVersion()},
                {"kind", kMutatingWebhookConfigurations.kind},
                {"metadata", {{"name", options_.configuration}}},
                {"webhooks", webhooks}};
  auto r = client_->Apply(kMutatingWebhookConfigurations, apply);
  if (!r.ok()) return r.status();
  log::Info("webhook caBundle patched", {{"configuration", options_.configuration},
                                         {"webhooks", static_cast<int64_t>(webhooks.size())}});
  return false;
}

}  // namespace sidelog::op
