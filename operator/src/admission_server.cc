#include "admission_server.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <boost/asio/ssl.hpp>
#include <chrono>

#include "sidelog/base64.h"
#include "sidelog/log.h"
#include "sidelog/problem.h"

namespace sidelog::op {

using web::http::http_request;
using web::http::methods;
using web::http::status_codes;
using web::http::experimental::listener::http_listener;
using web::http::experimental::listener::http_listener_config;
using Json = nlohmann::json;

namespace {

// A certificate and key as OpenSSL objects, shared by the handshakes that use them.
struct Loaded {
  CertificatePair pem;
  X509* cert = nullptr;
  EVP_PKEY* key = nullptr;
  ~Loaded() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
};

Result<std::shared_ptr<Loaded>> Load(const CertificatePair& pair) {
  auto loaded = std::make_shared<Loaded>();
  loaded->pem = pair;
  BIO* bio = BIO_new_mem_buf(pair.cert_pem.data(), static_cast<int>(pair.cert_pem.size()));
  loaded->cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  bio = BIO_new_mem_buf(pair.key_pem.data(), static_cast<int>(pair.key_pem.size()));
  loaded->key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ERR_clear_error();
  if (!loaded->cert) return Status::Invalid("the webhook certificate is not a PEM certificate");
  if (!loaded->key) return Status::Invalid("the webhook key is not a PEM private key");
  if (X509_check_private_key(loaded->cert, loaded->key) != 1) {
    ERR_clear_error();
    return Status::Invalid("the webhook key does not match its certificate");
  }
  return loaded;
}

void ReplyJson(const http_request& request, web::http::status_code code, const Json& body,
               const std::string& content_type) {
  web::http::http_response response(code);
  response.headers().set_content_type(content_type);
  response.set_body(body.dump(), content_type);
  request.reply(response).then([](const pplx::task<void>& t) {
    try {
      t.get();
    } catch (const std::exception&) {  // the API server hung up; nothing to tell it
    }
  });
}

void ReplyProblem(const http_request& request, int code, const std::string& title,
                  const std::string& detail) {
  ReplyJson(request, code, HttpProblemJson(code, title, detail), "application/problem+json");
}

}  // namespace

struct AdmissionServer::Impl {
  std::string listen;
  Handler handler;
  Metrics* metrics;
  std::unique_ptr<http_listener> listener;
  mutable std::mutex mu;
  std::shared_ptr<Loaded> current;

  std::shared_ptr<Loaded> Current() const {
    std::lock_guard<std::mutex> lock(mu);
    return current;
  }

  // OpenSSL's certificate callback: the pair set last, at every handshake.
  static int SelectCertificate(SSL* ssl, void* arg) {
    auto loaded = static_cast<Impl*>(arg)->Current();
    if (!loaded) return 0;  // no certificate yet: the handshake fails
    if (SSL_use_certificate(ssl, loaded->cert) != 1) return 0;
    if (SSL_use_PrivateKey(ssl, loaded->key) != 1) return 0;
    return 1;
  }

  void Count(const char* result, std::chrono::steady_clock::time_point started) {
    metrics
        ->GetCounter("sidelog_operator_admissions_total",
                     "Admission reviews answered, by result (allowed, patched, denied, error).",
                     {{"result", result}})
        .Inc();
    metrics
        ->GetHistogram("sidelog_operator_admission_duration_seconds",
                       "Time from an admission review's arrival to its answer.")
        .Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }

  void Serve(http_request request) {
    const auto started = std::chrono::steady_clock::now();
    const std::string path = request.request_uri().path();
    if (path != "/mutate") {
      ReplyProblem(request, 404, "Not Found", "the webhook serves POST /mutate only");
      return;
    }
    if (request.method() != methods::POST) {
      ReplyProblem(request, 405, "Method Not Allowed", "POST an AdmissionReview to /mutate");
      return;
    }
    request.extract_string(true).then([this, request,
                                       started](const pplx::task<std::string>& body) {
      std::string text;
      try {
        text = body.get();
      } catch (const std::exception& e) {
        Count("error", started);
        ReplyProblem(request, 400, "Bad Request", std::string("cannot read the body: ") + e.what());
        return;
      }
      AdmissionAnswer answer = ReviewAdmission(text, handler);
      Count(answer.result, started);
      if (!answer.review) {
        ReplyProblem(request, 400, "Bad Request", answer.error);
        return;
      }
      ReplyJson(request, status_codes::OK, *answer.review, "application/json");
    });
  }
};

AdmissionAnswer ReviewAdmission(const std::string& body, const AdmissionServer::Handler& handler) {
  AdmissionAnswer answer;
  Json review = Json::parse(body, nullptr, false);
  if (review.is_discarded() || !review.is_object() || !review["kind"].is_string() ||
      review["kind"] != "AdmissionReview" || !review["request"].is_object() ||
      !review["request"].contains("uid")) {
    answer.error = "the body is not an AdmissionReview with a request and its uid";
    return answer;
  }
  const Json& req = review["request"];
  AdmissionDecision decision;
  answer.result = "allowed";
  try {
    decision = handler(req);
    answer.result = !decision.allowed ? "denied" : decision.patch.empty() ? "allowed" : "patched";
  } catch (const std::exception& e) {
    decision = AdmissionDecision{};
    decision.allowed = false;
    decision.code = 500;
    decision.message = std::string("the sidecar injector failed: ") + e.what();
    answer.result = "error";
    log::Error("admission handler threw", {{"uid", req["uid"]}, {"error", e.what()}});
  }
  Json response = {{"uid", req["uid"]}, {"allowed", decision.allowed}};
  if (decision.allowed && !decision.patch.empty()) {
    response["patchType"] = "JSONPatch";
    response["patch"] = Base64Encode(decision.patch.dump());
  }
  if (!decision.allowed) {
    response["status"] = {{"code", decision.code}, {"message", decision.message}};
  }
  if (!decision.warnings.empty()) response["warnings"] = decision.warnings;
  const Json& version = review["apiVersion"];
  answer.review = Json{{"apiVersion", version.is_string() ? version : Json("admission.k8s.io/v1")},
                       {"kind", "AdmissionReview"},
                       {"response", std::move(response)}};
  return answer;
}

AdmissionServer::AdmissionServer(std::string listen, Handler handler, Metrics* metrics)
    : impl_(std::make_unique<Impl>()) {
  impl_->listen = std::move(listen);
  impl_->handler = std::move(handler);
  impl_->metrics = metrics;
}

AdmissionServer::~AdmissionServer() { Stop(); }

Status AdmissionServer::Start() {
  if (impl_->listener) return Status::Ok();
  http_listener_config config;
  Impl* impl = impl_.get();
  config.set_ssl_context_callback([impl](boost::asio::ssl::context& ctx) {
    ctx.set_options(boost::asio::ssl::context::default_workarounds |
                    boost::asio::ssl::context::no_sslv2 | boost::asio::ssl::context::no_sslv3 |
                    boost::asio::ssl::context::no_tlsv1 | boost::asio::ssl::context::no_tlsv1_1);
    SSL_CTX_set_cert_cb(ctx.native_handle(), &Impl::SelectCertificate, impl);
  });
  try {
    auto listener = std::make_unique<http_listener>(web::uri("https://" + impl_->listen), config);
    listener->support([impl](const http_request& r) { impl->Serve(r); });
    listener->open().wait();
    impl_->listener = std::move(listener);
  } catch (const std::exception& e) {
    return Status::Unavailable("cannot listen on " + impl_->listen + ": " + e.what());
  }
  log::Info("admission webhook listening", {{"listen", impl_->listen}});
  return Status::Ok();
}

void AdmissionServer::Stop() {
  if (!impl_ || !impl_->listener) return;
  try {
    impl_->listener->close().wait();
  } catch (const std::exception&) {
  }
  impl_->listener.reset();
}

Status AdmissionServer::SetCertificate(const CertificatePair& pair) {
  auto loaded = Load(pair);
  if (!loaded.ok()) return loaded.status();
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->current = *loaded;
  return Status::Ok();
}

CertificatePair AdmissionServer::Certificate() const {
  auto loaded = impl_->Current();
  return loaded ? loaded->pem : CertificatePair{};
}

bool AdmissionServer::Serving() const { return impl_->listener && impl_->Current(); }

}  // namespace sidelog::op
