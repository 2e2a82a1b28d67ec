#include "kube_client.h"

#include <cpprest/containerstream.h>
#include <cpprest/http_client.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "sidelog/event.h"

namespace sidelog::op {
namespace {

using web::http::http_request;
using web::http::http_response;
using web::http::method;
using web::http::methods;
using web::http::client::http_client;
using web::http::client::http_client_config;

std::string Escape(const std::string& s) { return web::uri::encode_data_string(s); }

// The API server's message from a Status body, or the body itself.
std::string MessageOf(const std::string& body) {
  auto j = Json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    return j["message"].get<std::string>();
  }
  return body.size() > 300 ? body.substr(0, 300) + "..." : body;
}

Status FromHttp(int code, const std::string& body, const std::string& retry_after,
                const std::string& what) {
  std::string msg = what + ": " + MessageOf(body);
  ErrorContext ctx;
  switch (code) {
    case 404:
      return Status::NotFound(msg);
    case 409:
      return Status::Conflict(msg);
    case 410:
      return Status::Gone(msg);
    case 400:
    case 422:
      return Status::Invalid(msg);
    case 401:
    case 403:
      return Status::Forbidden(msg);
    default:
      break;
  }
  if (code == 429 || code >= 500) {
    ctx.retry_after_seconds = 1;
    if (!retry_after.empty()) {
      try {
        ctx.retry_after_seconds = std::max(1, std::stoi(retry_after));
      } catch (const std::exception&) {
      }
    }
    return Status::Unavailable(msg + " (HTTP " + std::to_string(code) + ")", ctx);
  }
  return Status::Internal(msg + " (HTTP " + std::to_string(code) + ")");
}

}  // namespace

std::string ResourceType::Path(const std::string& ns) const {
  std::string p = group.empty() ? "/api/" + version : "/apis/" + group + "/" + version;
  if (namespaced && !ns.empty()) p += "/namespaces/" + Escape(ns);
  return p + "/" + plural;
}

std::string ResourceType::Path(const std::string& ns, const std::string& name,
                               const std::string& subresource) const {
  std::string p = Path(ns) + "/" + Escape(name);
  if (!subresource.empty()) p += "/" + subresource;
  return p;
}

std::string ObjectKey(const Json& object) {
  const Json& m = object.at("metadata");
  std::string name = m.value("name", "");
  std::string ns = m.value("namespace", "");
  return ns.empty() ? name : ns + "/" + name;
}

void SplitKey(const std::string& key, std::string* ns, std::string* name) {
  auto slash = key.find('/');
  if (slash == std::string::npos) {
    ns->clear();
    *name = key;
  } else {
    *ns = key.substr(0, slash);
    *name = key.substr(slash + 1);
  }
}

uint64_t ResourceVersionOf(const Json& object) {
  const std::string text = object["metadata"].value("resourceVersion", "");
  char* end = nullptr;
  uint64_t v = std::strtoull(text.c_str(), &end, 10);
  return (text.empty() || *end) ? 0 : v;
}

Json ControllerReference(const Json& owner) {
  const Json& m = owner.at("metadata");
  return {{"apiVersion", owner.value("apiVersion", "")},
          {"kind", owner.value("kind", "")},
          {"name", m.value("name", "")},
          {"uid", m.value("uid", "")},
          {"controller", true},
          {"blockOwnerDeletion", true}};
}

// metav1.MicroTime is core's event time format; metav1.Time drops the fraction.
std::string KubeTimeNow() { return FormatTime(NowMicros()).substr(0, 19) + "Z"; }
std::string KubeMicroTimeNow() { return FormatTime(NowMicros()); }

std::string Join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

struct KubeClient::Impl {
  explicit Impl(const KubeConfig& c) : config(c) {}

  http_client_config ClientConfig(std::chrono::seconds timeout) const {
    http_client_config cfg;
    cfg.set_timeout(timeout);
    cfg.set_validate_certificates(!config.insecure);
    KubeConfig c = config;
    cfg.set_ssl_context_callback([c](boost::asio::ssl::context& ctx) {
      if (!c.ca_pem.empty()) ctx.add_certificate_authority(boost::asio::buffer(c.ca_pem));
      if (!c.client_cert_pem.empty()) {
        ctx.use_certificate_chain(boost::asio::buffer(c.client_cert_pem));
        ctx.use_private_key(boost::asio::buffer(c.client_key_pem), boost::asio::ssl::context::pem);
      }
    });
    return cfg;
  }

  http_client& Shared() {
    std::lock_guard<std::mutex> lock(mu);
    if (!shared)
      shared = std::make_unique<http_client>(config.server, ClientConfig(std::chrono::seconds(30)));
    return *shared;
  }

  // The bearer token; a token file is re-read at most once a minute (rotated tokens).
  std::string Token() {
    if (config.token_file.empty()) return config.token;
    std::lock_guard<std::mutex> lock(mu);
    auto now = std::chrono::steady_clock::now();
    if (token_read_at.time_since_epoch().count() == 0 ||
        now - token_read_at > std::chrono::minutes(1)) {
      std::ifstream in(config.token_file);
      std::stringstream ss;
      ss << in.rdbuf();
      std::string t = ss.str();
      while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
      if (!t.empty()) token = t;
      token_read_at = now;
    }
    return token;
  }

  http_request Build(const method& m, const std::string& path_query) {
    http_request req(m);
    req.set_request_uri(path_query);
    req.headers().add("Accept", "application/json");
    req.headers().add("User-Agent", "sidelog-operator");
    std::string t = Token();
    if (!t.empty()) req.headers().add("Authorization", "Bearer " + t);
    return req;
  }

  Result<Json> Send(const method& m, const std::string& path_query, const Json* body,
                    const std::string& content_type) {
    if (stopped) return Status::Unavailable("the Kubernetes client is shut down");
    const std::string what = m + " " + path_query;
    http_request req = Build(m, path_query);
    if (body) req.set_body(body->dump(), content_type);
    try {
      http_response resp = Shared().request(req, cancel.get_token()).get();
      std::string text = resp.extract_utf8string(true).get();
      int code = resp.status_code();
      if (code >= 200 && code < 300) {
        if (text.empty()) return Json::object();
        auto j = Json::parse(text, nullptr, false);
        if (j.is_discarded()) return Status::Internal(what + ": the answer is not JSON");
        return j;
      }
      std::string retry_after;
      auto it = resp.headers().find("Retry-After");
      if (it != resp.headers().end()) retry_after = it->second;
      return FromHttp(code, text, retry_after, what);
    } catch (const std::exception& e) {
      ErrorContext ctx;
      ctx.retry_after_seconds = 1;
      return Status::Unavailable(what + ": " + e.what(), ctx);
    }
  }

  KubeConfig config;
  std::mutex mu;
  std::unique_ptr<http_client> shared;
  std::string token;
  std::chrono::steady_clock::time_point token_read_at{};
  pplx::cancellation_token_source cancel;
  std::atomic<bool> stopped{false};
};

Result<WatchEvent> DecodeWatchEvent(const std::string& line) {
  auto j = Json::parse(line, nullptr, false);
  if (!j.is_object() || !j["type"].is_string() || !j["object"].is_object()) {
    return Status::Unavailable("a watch event is not {type, object} JSON: " + line.substr(0, 200));
  }
  WatchEvent ev{j["type"].get<std::string>(), std::move(j["object"])};
  if (ev.type == "ERROR") {  // a metav1.Status
    const Json& code = ev.object["code"];
    const Json& message = ev.object["message"];
    std::string msg = message.is_string() ? message.get<std::string>() : "error";
    if (code == 410) return Status::Gone(msg);
    return Status::Unavailable(msg);
  }
  if (ev.type != "ADDED" && ev.type != "MODIFIED" && ev.type != "DELETED" &&
      ev.type != "BOOKMARK") {
    return Status::Unavailable("a watch event has the unknown type " + ev.type.substr(0, 40));
  }
  // What every watcher reads: metadata, its name (not on a bookmark) and resourceVersion.
  const Json& meta = ev.object["metadata"];
  auto text = [&meta](const char* key, bool required) {
    auto it = meta.find(key);
    return it == meta.end() ? !required : it->is_string();
  };
  if (!meta.is_object() || !text("name", ev.type != "BOOKMARK") || !text("namespace", false) ||
      !text("resourceVersion", false)) {
    return Status::Unavailable(
        "a watch event's object has no valid metadata (name, namespace, "
        "resourceVersion): " +
        line.substr(0, 200));
  }
  return ev;
}

KubeClient::KubeClient(KubeConfig config)
    : config_(std::move(config)), impl_(std::make_unique<Impl>(config_)) {}
KubeClient::~KubeClient() { Shutdown(); }

void KubeClient::Shutdown() {
  if (!impl_->stopped.exchange(true)) impl_->cancel.cancel();
}

Result<Json> KubeClient::Get(const ResourceType& type, const std::string& ns,
                             const std::string& name) {
  return impl_->Send(methods::GET, type.Path(ns, name), nullptr, "");
}

namespace {

std::string SelectorQuery(const Selector& s) {
  std::string q;
  if (!s.labels.empty()) q += "&labelSelector=" + Escape(s.labels);
  if (!s.fields.empty()) q += "&fieldSelector=" + Escape(s.fields);
  return q;
}

}  // namespace

Result<Json> KubeClient::List(const ResourceType& type, const std::string& ns,
                              const ListOptions& options) {
  std::string q = type.Path(ns) + "?limit=" + std::to_string(options.limit);
  if (!options.continue_token.empty()) q += "&continue=" + Escape(options.continue_token);
  q += SelectorQuery(options.selector);
  return impl_->Send(methods::GET, q, nullptr, "");
}

Result<Json> KubeClient::Create(const ResourceType& type, const std::string& ns,
                                const Json& object) {
  return impl_->Send(methods::POST, type.Path(ns), &object, "application/json");
}

Result<Json> KubeClient::Update(const ResourceType& type, const Json& object,
                                const std::string& subresource) {
  const Json& m = object.at("metadata");
  return impl_->Send(methods::PUT,
                     type.Path(m.value("namespace", ""), m.value("name", ""), subresource), &object,
                     "application/json");
}

Result<Json> KubeClient::MergePatch(const ResourceType& type, const std::string& ns,
                                    const std::string& name, const Json& patch,
                                    const std::string& subresource) {
  return impl_->Send(methods::PATCH, type.Path(ns, name, subresource), &patch,
                     "application/merge-patch+json");
}

Result<Json> KubeClient::Apply(const ResourceType& type, const Json& object,
                               const std::string& subresource) {
  const Json& m = object.at("metadata");
  // JSON is YAML, so the apply body may be JSON under the YAML content type.
  return impl_->Send(methods::PATCH,
                     type.Path(m.value("namespace", ""), m.value("name", ""), subresource) +
                         "?fieldManager=" + kFieldManager + "&force=true",
                     &object, "application/apply-patch+yaml");
}

Status KubeClient::Delete(const ResourceType& type, const std::string& ns,
                          const std::string& name) {
  return impl_->Send(methods::DEL, type.Path(ns, name), nullptr, "").status();
}

Status KubeClient::Watch(const ResourceType& type, const std::string& ns,
                         const WatchOptions& options, const std::function<bool(WatchEvent&)>& fn) {
  if (impl_->stopped) return Status::Unavailable("the Kubernetes client is shut down");
  const int timeout_seconds = options.timeout_seconds;
  std::string q = type.Path(ns) + "?watch=1&allowWatchBookmarks=true&timeoutSeconds=" +
                  std::to_string(timeout_seconds);
  if (!options.resource_version.empty())
    q += "&resourceVersion=" + Escape(options.resource_version);
  q += SelectorQuery(options.selector);
  const std::string what = "watch " + type.Path(ns);
  try {
    // Its own client: the response streams for minutes, and the timeout restarts at every
    // chunk received, so it only fires when the server goes silent for longer than it promised.
    http_client client(impl_->config.server,
                       impl_->ClientConfig(std::chrono::seconds(timeout_seconds + 30)));
    http_response resp =
        client.request(impl_->Build(methods::GET, q), impl_->cancel.get_token()).get();
    if (resp.status_code() != 200) {
      std::string text = resp.extract_utf8string(true).get();
      return FromHttp(resp.status_code(), text, "", what);
    }
    auto body = resp.body();
    while (true) {
      concurrency::streams::container_buffer<std::string> line;
      size_t n = body.read_line(line).get();
      if (n == 0 && body.is_eof()) return Status::Ok();
      const std::string& text = line.collection();
      if (text.empty()) continue;
      auto ev = DecodeWatchEvent(text);
      if (!ev.ok()) {
        return Status(ev.status().code(), what + ": " + ev.status().message(),
                      ev.status().context());
      }
      if (!fn(*ev)) return Status::Ok();
    }
  } catch (const std::exception& e) {
    return Status::Unavailable(what + ": " + e.what());
  }
}

}  // namespace sidelog::op
