// AdmissionServer: the HTTPS listener of the operator's admission webhook. It answers
// `POST /mutate` with AdmissionReview v1 (admission.k8s.io/v1), calling a handler with the
// review's request and wrapping the handler's answer (uid, base64 JSONPatch, status).
//
// TLS: the certificate is chosen at each handshake (OpenSSL's certificate callback) from the
// pair set last by SetCertificate, so a renewed certificate is served to new connections
// without a restart. Until a certificate is set, handshakes fail and Serving() is false.
//
// A request that is not an AdmissionReview answers 400 with problem+json. A handler that
// throws is answered as a denial (allowed false, code 500) with the exception's text, never
// as an allowed pod. Metrics: sidelog_operator_admissions_total{result} (allowed, patched,
// denied, error) and sidelog_operator_admission_duration_seconds.
//
// Thread-safe; the handler runs on the listener's threads, concurrently.
#pragma once

#include <cpprest/http_listener.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "sidelog/metrics.h"
#include "sidelog/status.h"
#include "webhook_tls.h"

namespace sidelog::op {

// What the handler decides for one request.
struct AdmissionDecision {
  bool allowed = true;
  nlohmann::json patch = nlohmann::json::array();  // RFC 6902 operations; empty: unchanged
  std::string message;                             // why it is denied (allowed false)
  int code = 403;                                  // status.code of a denial
  std::vector<std::string> warnings;               // shown by kubectl, allowed or not
};

class AdmissionServer {
 public:
  // The review's `request` object (uid, kind, namespace, name, object, dryRun, ...).
  using Handler = std::function<AdmissionDecision(const nlohmann::json& request)>;

  // Listens on `listen` (HOST:PORT) once started; `metrics` (not null) gets the series above.
  AdmissionServer(std::string listen, Handler handler, Metrics* metrics);
  ~AdmissionServer();
  AdmissionServer(const AdmissionServer&) = delete;
  AdmissionServer& operator=(const AdmissionServer&) = delete;

  // Opens the listener. Unavailable when the address cannot be bound.
  Status Start();
  void Stop();

  // The pair served from the next handshake on. InvalidArgument (and the current pair kept)
  // when the certificate and key cannot be read or do not match.
  Status SetCertificate(const CertificatePair& pair);
  // The pair being served (empty before the first SetCertificate).
  CertificatePair Certificate() const;
  // Started with a certificate.
  bool Serving() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The answer to one POST /mutate body: the AdmissionReview to send back (its response has the
// request's uid and the handler's decision; a handler that throws denies with code 500), or,
// when the body is not an AdmissionReview with a request and its uid, why (a 400).
struct AdmissionAnswer {
  std::optional<nlohmann::json> review;
  std::string error;
  const char* result = "error";  // allowed, patched, denied or error (the metric's label)
};
AdmissionAnswer ReviewAdmission(const std::string& body, const AdmissionServer::Handler& handler);

}  // namespace sidelog::op
