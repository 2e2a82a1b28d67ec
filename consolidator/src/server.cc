#include "server.h"

#include <cpprest/uri.h>

#include "problem.h"
#include "sidelog/log.h"
#include "sidelog/uri.h"

namespace sidelog::consolidator {
namespace {

using web::http::http_request;
using web::http::http_response;
using Clock = std::chrono::steady_clock;

bool IsLoopbackName(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  return host.rfind("127.", 0) == 0 && host.find_first_not_of("0123456789.") == std::string::npos;
}

// The host part of a Host header ("[::1]:4390" -> "::1", "a:1" -> "a").
std::string HostOf(const std::string& header) {
  if (!header.empty() && header[0] == '[') {
    auto close = header.find(']');
    return close == std::string::npos ? "" : header.substr(1, close - 1);
  }
  return header.substr(0, header.rfind(':'));
}

}  // namespace

Server::Server(Consolidator* consolidator, std::string listen)
    : consolidator_(consolidator), listen_(std::move(listen)) {
  listen_host_ = HostOf(listen_);
  loopback_ = IsLoopbackName(listen_host_);
}

Server::~Server() { Stop(); }

Status Server::Start() {
  try {
    listener_ = std::make_unique<web::http::experimental::listener::http_listener>(
        web::uri("http://" + listen_));
    listener_->support([this](const http_request& r) { Handle(r); });
    listener_->open().wait();
  } catch (const std::exception& e) {
    listener_.reset();
    return Status::Unavailable("cannot listen on " + listen_ + ": " + e.what());
  }
  return Status::Ok();
}

void Server::Stop() {
  if (!listener_) return;
  try {
    listener_->close().wait();
  } catch (const std::exception& e) {
    log::Warn("closing the listener", {{"error", e.what()}});
  }
  listener_.reset();
}

void Server::Reply(const http_request& request, const std::string& route,
                   const http_response& response) {
  consolidator_->metrics()
      .GetCounter("sidelog_consolidator_http_requests_total",
                  "HTTP requests by route, method and code.",
                  {{"route", route},
                   {"method", request.method()},
                   {"code", std::to_string(response.status_code())}})
      .Inc();
  request.reply(response).then([](const pplx::task<void>& t) {
    try {
      t.get();
    } catch (...) {  // the client went away
    }
  });
}

void Server::ReplyJson(const http_request& request, const std::string& route, int status,
                       const Json& body) {
  http_response resp(static_cast<web::http::status_code>(status));
  resp.set_body(body.dump(), "application/json");
  Reply(request, route, resp);
}

void Server::Handle(const http_request& request) {
  const std::string method = request.method();
  auto decoded = PercentDecode(request.request_uri().path());
  auto query = DecodeQuery(request.request_uri().query());
  const std::string path = decoded.value_or("");
  auto host = request.headers().find("Host");
  if (loopback_) {
    std::string h = host == request.headers().end() ? "" : HostOf(host->second);
    if (!IsLoopbackName(h) && h != listen_host_) {
      ErrorContext ctx;
      ctx.rule = "header.Host";
      return Reply(request, "unmatched",
                   ProblemResponse(Status::Forbidden(
                       "the Host header is not a loopback name or address; the consolidator "
                       "API listens on loopback only",
                       ctx)));
    }
  }
  if (!decoded || !query) {
    return Reply(request, "unmatched",
                 ProblemResponse(Status::Invalid(
                     std::string("the request ") + (decoded ? "query string" : "path") +
                     " is malformed (bad percent-encoding: a '%' must be followed by two "
                     "hexadecimal digits)")));
  }
  auto only = [&](const char* allowed, const std::string& route) {
    if (method == allowed) return true;
    http_response resp = HttpProblem(405, "Method not allowed",
                                     method + " is not allowed on " + path + "; use " + allowed);
    resp.headers().add("Allow", allowed);
    Reply(request, route, resp);
    return false;
  };

  const std::string prefix = "/v1/queries/";
  if (path.rfind(prefix, 0) == 0 && path.size() > prefix.size()) {
    const std::string route = "/v1/queries/{name}";
    if (!only("GET", route)) return;
    std::string name = path.substr(prefix.size());
    const std::map<std::string, std::string>& params = *query;
    auto started = Clock::now();
    auto rows = consolidator_->queries().Run(name, params);
    Labels labels = {
        {"query", rows.ok() || rows.status().code() != Status::Code::kNotFound ? name : "unknown"}};
    consolidator_->metrics()
        .GetHistogram("sidelog_consolidator_query_seconds", "Time to run a named query.", labels)
        .Observe(std::chrono::duration<double>(Clock::now() - started).count());
    if (!rows.ok()) return Reply(request, route, ProblemResponse(rows.status()));
    return ReplyJson(request, route, 200, *rows);
  }
  if (path == "/v1/queries") {
    if (!only("GET", path)) return;
    return ReplyJson(request, path, 200, {{"queries", consolidator_->queries().List()}});
  }
  if (path == "/v1/rebuild") {
    if (method == "DELETE") {
      if (auto st = consolidator_->CancelRebuild(); !st.ok()) {
        return Reply(request, path, ProblemResponse(st));
      }
      log::Info("rebuild cancellation requested over HTTP");
      return ReplyJson(request, path, 202, consolidator_->StatusJson()["rebuild"]);
    }
    if (!only("POST", path)) return;
    if (auto st = consolidator_->RequestRebuild(); !st.ok()) {
      return Reply(request, path, ProblemResponse(st));
    }
    log::Info("rebuild requested over HTTP");
    return ReplyJson(request, path, 202, consolidator_->StatusJson()["rebuild"]);
  }
  if (path == "/v1/status") {
    if (!only("GET", path)) return;
    return ReplyJson(request, path, 200, consolidator_->StatusJson());
  }
  if (path == "/livez") {
    if (!only("GET", path)) return;
    return ReplyJson(request, path, 200, {{"status", "ok"}});
  }
  if (path == "/readyz") {
    if (!only("GET", path)) return;
    bool ready = consolidator_->ready();
    return ReplyJson(request, path, ready ? 200 : 503, {{"status", ready ? "ready" : "starting"}});
  }
  if (path == "/metrics") {
    if (!only("GET", path)) return;
    http_response resp(web::http::status_codes::OK);
    resp.set_body(consolidator_->metrics().Render(), "text/plain; version=0.0.4; charset=utf-8");
    return Reply(request, path, resp);
  }
  Reply(request, "unmatched",
        HttpProblem(404, "Not found", "no route " + method + " " + path.substr(0, 200)));
}

}  // namespace sidelog::consolidator
