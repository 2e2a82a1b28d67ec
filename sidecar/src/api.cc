#include "api.h"

#include <cpprest/uri.h>
#include <pplx/threadpool.h>

#include <cstdlib>
#include <thread>

#include "problem.h"
#include "routes.h"
#include "sidelog/log.h"
#include "sidelog/names.h"
#include "sidelog/uri.h"

namespace sidelog::sidecar {

using web::http::http_request;
using web::http::http_response;
using Clock = std::chrono::steady_clock;

struct Api::Call {
  http_request request;
  std::string request_id;
  std::string method;
  std::string route = "unmatched";
  Clock::time_point start = Clock::now();
  std::map<std::string, std::string> params;  // path parameters
  std::map<std::string, std::string> query;   // decoded query parameters
};

namespace {

std::string Header(const http_request& r, const char* name) {
  auto it = r.headers().find(name);
  return it == r.headers().end() ? std::string() : it->second;
}

std::string NewRequestId() { return NewUuidV7().substr(24); }

bool IsLoopbackHost(const std::string& host_header, const std::string& listen_host) {
  std::string host = host_header;
  if (!host.empty() && host[0] == '[') {
    auto close = host.find(']');
    if (close == std::string::npos) return false;
    host = host.substr(1, close - 1);
  } else if (auto colon = host.rfind(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  if (host == "localhost" || host == "::1" || host == listen_host) return true;
  if (host.rfind("127.", 0) == 0) {
    return host.find_first_not_of("0123456789.") == std::string::npos;
  }
  return false;
}

Status BadParam(const std::string& name, const std::string& why) {
  ErrorContext ctx;
  ctx.rule = "query." + name;
  return Status::Invalid("query parameter " + name + " " + why, ctx);
}

// Parses an optional integer query parameter within [min, max].
Status IntParam(const std::map<std::string, std::string>& q, const std::string& name, int64_t min,
                int64_t max, std::optional<int64_t>* out) {
  auto it = q.find(name);
  if (it == q.end()) return Status::Ok();
  const std::string& v = it->second;
  if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos) {
    return BadParam(name, "must be a non-negative integer, got \"" + v.substr(0, 40) + "\"");
  }
  int64_t n = std::stoll(v);
  if (n < min || n > max) {
    return BadParam(name, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  *out = n;
  return Status::Ok();
}

std::set<std::string> SplitTypes(const std::string& csv) {
  std::set<std::string> out;
  size_t start = 0;
  while (start <= csv.size()) {
    size_t end = csv.find(',', start);
    if (end == std::string::npos) end = csv.size();
    if (end > start) out.insert(csv.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// The stream's `types` filter narrowed by the request's `types`.
Result<std::set<std::string>> TypeFilter(const StreamConfig& s,
                                         const std::map<std::string, std::string>& q) {
  std::set<std::string> wanted;
  if (auto it = q.find("types"); it != q.end()) {
    wanted = SplitTypes(it->second);
    for (const auto& t : wanted) {
      if (auto v = ValidateEventType(t); !v.ok()) return BadParam("types", v.message());
    }
  }
  if (s.types.empty()) return wanted;
  std::set<std::string> allowed(s.types.begin(), s.types.end());
  if (wanted.empty()) return allowed;
  std::set<std::string> both;
  for (const auto& t : wanted) {
    if (allowed.count(t)) both.insert(t);
  }
  if (both.empty()) both.insert("-");  // nothing this service may see: match no type
  return both;
}

Json EventsJson(const std::vector<StoredEvent>& events) {
  Json arr = Json::array();
  for (const auto& e : events) arr.push_back(ToCloudEvent(e));
  return arr;
}

// Parses `If-Match: "N"` (or N, or *) into an expected version.
Result<std::optional<ExpectedVersion>> IfMatch(const std::string& header) {
  if (header.empty()) return std::optional<ExpectedVersion>();
  std::string v = header;
  if (v.rfind("W/", 0) == 0) v = v.substr(2);
  if (v == "*") return std::optional<ExpectedVersion>(ExpectedVersion::Exists());
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos) {
    ErrorContext ctx;
    ctx.rule = "header.If-Match";
    return Status::Invalid(
        "If-Match must be an entity version like \"3\" (or *), got " + header.substr(0, 40), ctx);
  }
  return std::optional<ExpectedVersion>(ExpectedVersion::Exactly(std::stoll(v)));
}

Result<EventInput> ParseEvent(const Json& j, size_t i) {
  const std::string where = "events[" + std::to_string(i) + "]";
  ErrorContext ctx;
  ctx.rule = "body.events";
  if (!j.is_object()) return Status::Invalid(where + " must be an object", ctx);
  EventInput e;
  for (const auto& [k, v] : j.items()) {
    if (k == "id") {
      if (!v.is_string()) return Status::Invalid(where + ".id must be a string", ctx);
      e.id = v.get<std::string>();
      if (e.id.empty()) return Status::Invalid(where + ".id must not be empty", ctx);
    } else if (k == "type") {
      if (!v.is_string()) return Status::Invalid(where + ".type must be a string", ctx);
      e.type = v.get<std::string>();
    } else if (k == "data") {
      e.data = v;
    } else if (k == "metadata") {
      if (!v.is_object()) {
        return Status::Invalid(where + ".metadata must be an object of strings", ctx);
      }
      for (const auto& [mk, mv] : v.items()) {
        if (!mv.is_string()) {
          std::string what = where;
          what += ".metadata." + mk + " must be a string";
          return Status::Invalid(what, ctx);
        }
        e.metadata[mk] = mv.get<std::string>();
      }
    } else {
      return Status::Invalid(where + " has an unknown field \"" + k.substr(0, 40) +
                                 "\" (known: id, type, data, metadata)",
                             ctx);
    }
  }
  if (e.type.empty() && !j.contains("type")) {
    return Status::Invalid(where + ".type is required", ctx);
  }
  return e;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Routing

const std::vector<Api::Route>& Api::Table() {
  static const std::vector<Route> kTable = {
      {{"POST", "/v1/streams/{stream}/entities/{entity}/events"}, &Api::Append},
      {{"GET", "/v1/streams/{stream}/entities/{entity}/events"}, &Api::EntityEvents},
      {{"GET", "/v1/streams/{stream}/entities/{entity}"}, &Api::EntityState},
      {{"GET", "/v1/streams/{stream}/entities"}, &Api::ListEntities},
      {{"GET", "/v1/streams/{stream}/events"}, &Api::StreamEvents},
      {{"GET", "/v1/streams"}, &Api::Streams},
      {{"GET", "/v1/subscriptions"}, &Api::ListSubscriptions},
      {{"GET", "/v1/subscriptions/{name}"}, &Api::GetSubscription},
      {{"GET", "/v1/subscriptions/{name}/parked"}, &Api::ListParked},
      {{"POST", "/v1/subscriptions/{name}/parked/replay"}, &Api::ReplayParked},
      {{"DELETE", "/v1/subscriptions/{name}/parked/{id}"}, &Api::DiscardParked},
      {{"GET", "/v1/status"}, &Api::StatusRoute},
      {{"GET", "/livez"}, &Api::Livez},
      {{"GET", "/readyz"}, &Api::Readyz},
      {{"GET", "/metrics"}, &Api::MetricsRoute},
  };
  return kTable;
}

const std::vector<RouteSpec>& Api::Routes() {
  static const std::vector<RouteSpec> kRoutes = [] {
    std::vector<RouteSpec> out;
    for (const auto& r : Table()) out.push_back(r.spec);
    return out;
  }();
  return kRoutes;
}

Api::Api(const SidecarConfig& config, EventLog* log, Metrics* metrics, Feed* feed,
         Replicator* replicator, Deliveries* deliveries)
    : config_(config),
      log_(log),
      metrics_(metrics),
      feed_(feed),
      replicator_(replicator),
      deliveries_(deliveries) {
  listen_host_ = config_.listen.substr(0, config_.listen.rfind(':'));
}

bool Api::HostAllowed(const http_request& request) const {
  return IsLoopbackHost(Header(request, "Host"), listen_host_);
}

void Api::Handle(const http_request& request) {
  Call call;
  call.request = request;
  call.method = request.method();
  std::string rid = Header(request, "X-Request-Id");
  bool rid_ok = !rid.empty() && rid.size() <= 128 &&
                std::all_of(rid.begin(), rid.end(), [](char c) { return c > 0x20 && c < 0x7f; });
  call.request_id = rid_ok ? rid : NewRequestId();

  // Transport limits first: URL, headers, Host.
  const std::string raw_uri = request.request_uri().to_string();
  if (static_cast<int64_t>(raw_uri.size()) > config_.limits.max_url_bytes) {
    Finish(call,
           HttpProblem(414, "URI too long",
                       "the request URI has " + std::to_string(raw_uri.size()) +
                           " bytes; the limit is " + std::to_string(config_.limits.max_url_bytes),
                       call.request_id));
    return;
  }
  size_t header_bytes = 0;
  for (const auto& [k, v] : request.headers()) header_bytes += k.size() + v.size() + 4;
  if (static_cast<int64_t>(header_bytes) > config_.limits.max_header_bytes) {
    Finish(call, HttpProblem(431, "Request header fields too large",
                             "the headers have " + std::to_string(header_bytes) +
                                 " bytes; the limit is " +
                                 std::to_string(config_.limits.max_header_bytes),
                             call.request_id));
    return;
  }
  if (!HostAllowed(request)) {
    ErrorContext ctx;
    ctx.rule = "header.Host";
    Fail(call, Status::Forbidden("the Host header \"" + Header(request, "Host").substr(0, 80) +
                                     "\" is not a loopback name or address; the sidecar API "
                                     "serves only its own pod (DNS rebinding protection)",
                                 ctx));
    return;
  }
  Dispatch(call, false);
}

void Api::HandleHealth(const http_request& request) {
  Call call;
  call.request = request;
  call.method = request.method();
  call.request_id = NewRequestId();
  Dispatch(call, true);
}

void Api::Dispatch(Call& call, bool health_only) {
  std::vector<std::string> segments;
  // request_uri(), not relative_uri(): the listener serves "/", and relative_uri() throws on
  // a target such as "t:00" (a scheme and no path) that request_uri() holds as it came.
  if (!SplitPath(call.request.request_uri().path(), &segments)) {
    Fail(call, Status::Invalid("the request path is malformed (bad percent-encoding)"));
    return;
  }
  auto query = DecodeQuery(call.request.request_uri().query());
  if (!query) {
    Fail(call, Status::Invalid("the query string is malformed (bad percent-encoding: a '%' "
                               "must be followed by two hexadecimal digits)"));
    return;
  }
  call.query = std::move(*query);
  std::string allowed;
  for (const auto& route : Table()) {
    std::map<std::string, std::string> params;
    if (!MatchTemplate(route.spec.path, segments, &params)) continue;
    if (health_only && route.spec.path != "/livez" && route.spec.path != "/readyz" &&
        route.spec.path != "/metrics") {
      continue;
    }
    if (route.spec.method != call.method) {
      allowed += (allowed.empty() ? "" : ", ") + route.spec.method;
      continue;
    }
    call.route = route.spec.path;
    call.params = std::move(params);
    try {
      (this->*route.handler)(call);
    } catch (const std::exception& e) {  // a bug must cost one request, never the process
      log::Error("handler failed unexpectedly",
                 {{"requestId", call.request_id}, {"route", call.route}, {"error", e.what()}});
      Fail(call, Status::Internal(std::string("unexpected error: ") + e.what()));
    }
    return;
  }
  if (!allowed.empty()) {
    auto resp =
        HttpProblem(405, "Method not allowed",
                    call.method + " is not supported here; use " + allowed, call.request_id);
    resp.headers().add("Allow", allowed);
    Finish(call, resp);
    return;
  }
  Fail(call, Status::NotFound("no route " + call.method + " " +
                              call.request.request_uri().path().substr(0, 200) +
                              (health_only ? " on the health listener (it serves only /livez, "
                                             "/readyz and /metrics)"
                                           : "")));
}

void Api::Finish(Call& call, http_response response, const std::string& detail) {
  response.headers().add("X-Request-Id", call.request_id);
  const int code = response.status_code();
  const double seconds = std::chrono::duration<double>(Clock::now() - call.start).count();
  metrics_
      ->GetCounter("sidelog_http_requests_total", "HTTP requests by route, method and code.",
                   {{"route", call.route}, {"method", call.method}, {"code", std::to_string(code)}})
      .Inc();
  metrics_
      ->GetHistogram("sidelog_http_request_duration_seconds", "HTTP request latency by route.",
                     {{"route", call.route}})
      .Observe(seconds);
  auto level = code >= 500 ? log::Level::kWarn : log::Level::kDebug;
  if (log::Enabled(level)) {
    Json fields = {{"requestId", call.request_id},
                   {"method", call.method},
                   {"route", call.route},
                   {"status", code},
                   {"ms", seconds * 1000}};
    if (!detail.empty()) fields["detail"] = detail;
    log::Write(level, "request", fields);
  }
  call.request.reply(response).then([](const pplx::task<void>& t) {
    try {
      t.get();
    } catch (...) {  // the client went away; nothing to do
    }
  });
}

void Api::WaitForAnswers(std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (answers_pending_.load() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void Api::Fail(Call& call, const Status& status) {
  // A server-side failure says why in the request log; client errors are the client's business.
  Finish(call, ProblemResponse(status, call.request_id), status.message());
}

void Api::ReplyJson(Call& call, int http_status, const Json& body) {
  http_response resp(static_cast<web::http::status_code>(http_status));
  resp.set_body(body.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
  Finish(call, resp);
}

const StreamConfig* Api::StreamOf(Call& call) {
  const std::string& name = call.params["stream"];
  const StreamConfig* s = config_.FindStream(name);
  if (s == nullptr) {
    ErrorContext ctx;
    ctx.stream = name;
    Fail(call, Status::NotFound(
                   "stream " + name + " is not configured for service " + config_.service, ctx));
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Appends

void Api::Append(Call& call) {
  const StreamConfig* s = StreamOf(call);
  if (s == nullptr) return;
  ErrorContext ctx;
  ctx.stream = s->name;
  ctx.entity = call.params["entity"];
  if (s->access != StreamAccess::kWrite) {
    ctx.rule = "access";
    Fail(call, Status::Forbidden("service " + config_.service + " may only read stream " + s->name +
                                     "; declare it under `produces` to write it",
                                 ctx));
    return;
  }
  if (draining_) {
    ctx.retry_after_seconds = 1;
    Fail(call, Status::Unavailable("the sidecar is shutting down", ctx));
    return;
  }
  std::string content_type = Header(call.request, "Content-Type");
  std::string media = content_type.substr(0, content_type.find(';'));
  media.erase(media.find_last_not_of(" \t") + 1);
  std::transform(media.begin(), media.end(), media.begin(), ::tolower);
  if (media != "application/json") {
    Finish(call, HttpProblem(415, "Unsupported media type",
                             content_type.empty() ? "the body needs Content-Type: application/json"
                                                  : "Content-Type " + content_type.substr(0, 80) +
                                                        " is not supported; send application/json",
                             call.request_id));
    return;
  }
  const int64_t limit = config_.limits.max_body_bytes;
  auto length = call.request.headers().content_length();
  if (length != static_cast<decltype(length)>(-1) && static_cast<int64_t>(length) > limit) {
    ctx.rule = "limits.maxBodyBytes";
    Fail(call, Status::TooLarge("the body has " + std::to_string(length) + " bytes; the limit is " +
                                    std::to_string(limit),
                                ctx));
    return;
  }
  auto shared = std::make_shared<Call>(std::move(call));
  // Runs inline where the body completes (here when it is already read) instead of as a new
  // task on the pool: AppendBody never blocks, and a pool hop per append costs a context switch.
  // `_Then` is pplx's inline continuation (cpprestsdk uses it for the same purpose).
  shared->request.extract_vector()._Then(
      [this, shared](const pplx::task<std::vector<unsigned char>>& t) {
        std::vector<unsigned char> body;
        try {
          body = t.get();
        } catch (const std::exception& e) {
          Fail(*shared, Status::Invalid(std::string("cannot read the request body: ") + e.what()));
          return;
        }
        try {
          AppendBody(*shared, body);
        } catch (const std::exception& e) {
          log::Error("append failed unexpectedly",
                     {{"requestId", shared->request_id}, {"error", e.what()}});
          Fail(*shared, Status::Internal(std::string("unexpected error: ") + e.what()));
        }
      },
      nullptr);
}

void Api::AppendBody(Call& call, const std::vector<unsigned char>& body) {
  const std::string stream = call.params["stream"];
  const std::string entity = call.params["entity"];
  ErrorContext ctx;
  ctx.stream = stream;
  ctx.entity = entity;
  if (static_cast<int64_t>(body.size()) > config_.limits.max_body_bytes) {
    ctx.rule = "limits.maxBodyBytes";
    Fail(call,
         Status::TooLarge("the body has " + std::to_string(body.size()) + " bytes; the limit is " +
                              std::to_string(config_.limits.max_body_bytes),
                          ctx));
    return;
  }
  size_t bad = 0;
  if (!IsValidUtf8(std::string_view(reinterpret_cast<const char*>(body.data()), body.size()),
                   &bad)) {
    ctx.rule = "body.utf8";
    Fail(call, Status::Invalid("the body is not valid JSON: it is not valid UTF-8 (byte " +
                                   std::to_string(bad) + ")",
                               ctx));
    return;
  }
  Json j;
  try {
    j = Json::parse(body.begin(), body.end());
  } catch (const Json::exception& e) {  // parse_error, or out_of_range for 1e999
    ctx.rule = "body.json";
    std::string what = e.what();
    auto colon = what.find("parse error");
    Fail(call, Status::Invalid("the body is not valid JSON: " +
                                   (colon == std::string::npos ? what : what.substr(colon)),
                               ctx));
    return;
  }
  ctx.rule = "body";
  if (!j.is_object()) {
    Fail(call, Status::Invalid("the body must be a JSON object {expectedVersion?, events}", ctx));
    return;
  }
  AppendRequest req;
  req.stream = stream;
  req.entity = entity;
  bool body_expected = false;
  for (const auto& [k, v] : j.items()) {
    if (k == "expectedVersion") {
      auto ev = ExpectedVersion::FromJson(v);
      if (!ev.ok()) {
        ctx.rule = "body.expectedVersion";
        Fail(call, Status::Invalid(ev.status().message(), ctx));
        return;
      }
      req.expected = *ev;
      body_expected = !v.is_null();
    } else if (k == "events") {
      if (!v.is_array()) {
        ctx.rule = "body.events";
        Fail(call, Status::Invalid("events must be a list of events", ctx));
        return;
      }
      if (v.size() > static_cast<size_t>(config_.limits.max_events_per_commit)) {
        ctx.rule = "limits.maxEventsPerCommit";
        Fail(call, Status::TooLarge("a commit holds at most " +
                                        std::to_string(config_.limits.max_events_per_commit) +
                                        " events, this one has " + std::to_string(v.size()),
                                    ctx));
        return;
      }
      for (size_t i = 0; i < v.size(); ++i) {
        auto e = ParseEvent(v[i], i);
        if (!e.ok()) {
          Fail(call, Status(e.status().code(), e.status().message(), [&] {
                 auto c = ctx;
                 c.rule = e.status().context().rule;
                 return c;
               }()));
          return;
        }
        req.events.push_back(std::move(e).value());
      }
    } else {
      Fail(call, Status::Invalid("the body has an unknown field \"" + k.substr(0, 40) +
                                     "\" (known: expectedVersion, events)",
                                 ctx));
      return;
    }
  }
  if (!j.contains("events")) {
    ctx.rule = "body.events";
    Fail(call, Status::Invalid("the body needs events: [{type, data}]", ctx));
    return;
  }
  auto if_match = IfMatch(Header(call.request, "If-Match"));
  if (!if_match.ok()) {
    Fail(call, if_match.status());
    return;
  }
  if (if_match->has_value()) {
    if (body_expected && (*if_match)->ToString() != req.expected.ToString()) {
      ctx.rule = "header.If-Match";
      Fail(call, Status::Invalid("If-Match " + (*if_match)->ToString() +
                                     " disagrees with expectedVersion " + req.expected.ToString(),
                                 ctx));
      return;
    }
    req.expected = **if_match;
  }
  const size_t n_events = req.events.size();
  auto shared = std::make_shared<Call>(std::move(call));
  auto reply = [this, shared, stream, n_events](Result<AppendResult> r) {
    const char* result = "ok";
    if (!r.ok()) {
      switch (r.status().code()) {
        case Status::Code::kConflict:
          result = "conflict";
          break;
        case Status::Code::kRejected:
          result = "rejected";
          break;
        case Status::Code::kUnavailable:
          result = "unavailable";
          break;
        case Status::Code::kStorageFull:
          result = "storage_full";
          break;
        case Status::Code::kGone:
          result = "gone";
          break;
        default:
          result = "error";
      }
    } else if (r->replay) {
      result = "replay";
    }
    metrics_
        ->GetCounter("sidelog_appends_total", "Appends (commits) by stream and result.",
                     {{"stream", stream}, {"result", result}})
        .Inc();
    if (!r.ok()) {
      Fail(*shared, r.status());
      return;
    }
    if (!r->replay) {
      metrics_
          ->GetCounter("sidelog_events_appended_total", "Events stored by appends, by stream.",
                       {{"stream", stream}})
          .Inc(static_cast<double>(n_events));
    }
    Json events = Json::array();
    for (const auto& e : r->events) events.push_back({{"id", e.id}, {"version", e.version}});
    Json body = {
        {"stream", r->stream},   {"entity", r->entity},     {"fromVersion", r->from_version},
        {"version", r->version}, {"position", r->position}, {"events", events}};
    http_response resp(r->replay ? web::http::status_codes::OK : web::http::status_codes::Created);
    resp.headers().add("ETag", "\"" + std::to_string(r->version) + "\"");
    resp.headers().add("Location", "/v1/streams/" + web::uri::encode_data_string(r->stream) +
                                       "/entities/" + web::uri::encode_data_string(r->entity));
    if (r->replay) resp.headers().add("Sidelog-Replay", "true");
    resp.set_body(body.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
    Finish(*shared, resp);
  };
  // The answer runs on the log's writer thread, the one serial stage of every append: it only
  // hands the result to the HTTP pool, which builds and sends the response.
  auto answer = [this, reply = std::move(reply)](Result<AppendResult> r) {
    auto result = std::make_shared<Result<AppendResult>>(std::move(r));
    ++answers_pending_;
    crossplat::threadpool::shared_instance().service().post([this, reply, result] {
      try {
        reply(std::move(*result));
      } catch (const std::exception& e) {
        log::Error("answering an append failed", {{"error", e.what()}});
      }
      --answers_pending_;
    });
  };
  if (replicator_) {
    replicator_->AppendAsync(std::move(req), std::move(answer));
  } else {
    log_->AppendAsync(std::move(req), std::move(answer));
  }
}

// ---------------------------------------------------------------------------------------------
// Reads

void Api::EntityEvents(Call& call) {
  const StreamConfig* s = StreamOf(call);
  if (s == nullptr) return;
  std::optional<int64_t> from, limit;
  for (const auto& st : {IntParam(call.query, "fromVersion", 1, INT64_MAX / 2, &from),
                         IntParam(call.query, "limit", 1, 1000, &limit)}) {
    if (!st.ok()) return Fail(call, st);
  }
  auto r = log_->ReadEntity(s->name, call.params["entity"], from.value_or(1),
                            static_cast<int>(limit.value_or(100)));
  if (!r.ok()) return Fail(call, r.status());
  Json next = r->next ? Json(*r->next) : Json(nullptr);
  ReplyJson(call, 200,
            {{"events", EventsJson(r->events)}, {"version", r->version}, {"next", next}});
}

void Api::EntityState(Call& call) {
  const StreamConfig* s = StreamOf(call);
  if (s == nullptr) return;
  StateQuery query;
  std::optional<int64_t> version, min_position;
  for (const auto& st : {IntParam(call.query, "version", 1, INT64_MAX / 2, &version),
                         IntParam(call.query, "minPosition", 0, INT64_MAX / 2, &min_position)}) {
    if (!st.ok()) return Fail(call, st);
  }
  query.version = version;
  if (auto at = call.query.find("at"); at != call.query.end()) {
    if (version) return Fail(call, BadParam("at", "cannot be combined with version"));
    auto t = ParseTime(at->second);
    if (!t.ok())
      return Fail(call, BadParam("at", "must be an RFC 3339 time: " + t.status().message()));
    query.at = *t;
  }
  if (auto c = call.query.find("consistency");
      c != call.query.end() && c->second != "eventual" && c->second != "strong") {
    return Fail(call, BadParam("consistency", "must be eventual or strong"));
  }
  const std::string stream = s->name;
  const std::string entity = call.params["entity"];
  const bool strong = call.query.count("consistency") && call.query["consistency"] == "strong";
  if (strong && replicator_) {
    // Catch up to JetStream's last sequence first, on a replicator thread.
    auto shared = std::make_shared<Call>(std::move(call));
    replicator_->Post([this, shared, stream, entity, query] {
      replicator_->CatchUp(stream, [this, shared, stream, entity, query](bool reached) {
        if (reached) return AnswerState(*shared, stream, entity, query);
        ErrorContext ctx;
        ctx.stream = stream;
        ctx.entity = entity;
        ctx.reason = "CatchUpFailed";
        ctx.retry_after_seconds = 1;
        Fail(*shared, Status::Unavailable("consistency=strong: could not catch up with JetStream "
                                          "(NATS unreachable or too far behind); a read without "
                                          "it is served from the local log",
                                          ctx));
      });
    });
    return;
  }
  if (!min_position || log_->Watermark(stream) >= *min_position) {
    AnswerState(call, stream, entity, query);
    return;
  }
  auto shared = std::make_shared<Call>(std::move(call));
  const int64_t wanted = *min_position;
  feed_->WaitFor(stream, wanted, std::chrono::milliseconds(5000),
                 [this, shared, stream, entity, query, wanted](bool reached) {
                   if (reached) return AnswerState(*shared, stream, entity, query);
                   ErrorContext ctx;
                   ctx.stream = stream;
                   ctx.entity = entity;
                   ctx.reason = "MinPositionTimeout";
                   ctx.retry_after_seconds = 1;
                   Fail(*shared,
                        Status::Unavailable("the local log did not reach position " +
                                                std::to_string(wanted) + " within 5 s (it is at " +
                                                std::to_string(log_->Watermark(stream)) + ")",
                                            ctx));
                 });
}

void Api::AnswerState(Call& call, const std::string& stream, const std::string& entity,
                      const StateQuery& query) {
  auto t0 = Clock::now();
  auto r = log_->State(stream, entity, query);
  metrics_->GetHistogram("sidelog_fold_duration_seconds", "Time to fold an entity's state.")
      .Observe(std::chrono::duration<double>(Clock::now() - t0).count());
  if (!r.ok()) return Fail(call, r.status());
  const std::string etag = "\"" + std::to_string(r->version) + "\"";
  if (Header(call.request, "If-None-Match") == etag) {
    http_response resp(web::http::status_codes::NotModified);
    resp.headers().add("ETag", etag);
    return Finish(call, resp);
  }
  Json status = r->status.empty() ? Json(nullptr) : Json(r->status);
  Json body = {{"stream", stream}, {"entity", entity},  {"version", r->version},
               {"status", status}, {"state", r->state}, {"updatedAt", FormatTime(r->updated_at)}};
  http_response resp(web::http::status_codes::OK);
  resp.headers().add("ETag", etag);
  resp.set_body(body.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
  Finish(call, resp);
}

void Api::ListEntities(Call& call) {
  const StreamConfig* s = StreamOf(call);
  if (s == nullptr) return;
  std::optional<int64_t> limit;
  if (auto st = IntParam(call.query, "limit", 1, 1000, &limit); !st.ok()) return Fail(call, st);
  std::string prefix = call.query.count("prefix") ? call.query["prefix"] : "";
  std::string after = call.query.count("after") ? call.query["after"] : "";
  auto r = log_->ListEntities(s->name, prefix, after, static_cast<int>(limit.value_or(100)));
  if (!r.ok()) return Fail(call, r.status());
  Json entities = Json::array();
  for (const auto& e : r->entities) {
    entities.push_back({{"id", e.id}, {"version", e.version}, {"deleted", e.deleted}});
  }
  ReplyJson(call, 200,
            {{"entities", entities}, {"next", r->next ? Json(*r->next) : Json(nullptr)}});
}

void Api::StreamEvents(Call& call) {
  const StreamConfig* s = StreamOf(call);
  if (s == nullptr) return;
  std::optional<int64_t> from, limit;
  for (const auto& st : {IntParam(call.query, "from", 0, INT64_MAX / 2, &from),
                         IntParam(call.query, "limit", 1, 1000, &limit)}) {
    if (!st.ok()) return Fail(call, st);
  }
  auto types = TypeFilter(*s, call.query);
  if (!types.ok()) return Fail(call, types.status());
  bool follow = false;
  if (auto f = call.query.find("follow"); f != call.query.end()) {
    if (f->second == "true" || f->second == "1") {
      follow = true;
    } else if (f->second != "false" && f->second != "0") {
      return Fail(call, BadParam("follow", "must be true or false"));
    }
  }
  if (!follow) {
    auto r =
        log_->ReadStream(s->name, from.value_or(0), static_cast<int>(limit.value_or(100)), *types);
    if (!r.ok()) return Fail(call, r.status());
    ReplyJson(call, 200, {{"events", EventsJson(r->events)}, {"next", r->next}});
    return;
  }
  // Last-Event-ID ("<position>.<index>") wins over `from`.
  int64_t after = from.value_or(0);
  int after_index = -1;
  std::string last_id = Header(call.request, "Last-Event-ID");
  if (!last_id.empty()) {
    auto dot = last_id.find('.');
    std::string pos = last_id.substr(0, dot);
    std::string idx = dot == std::string::npos ? "" : last_id.substr(dot + 1);
    bool ok =
        !pos.empty() && pos.size() <= 18 &&
        pos.find_first_not_of("0123456789") == std::string::npos &&
        (dot == std::string::npos || (!idx.empty() && idx.size() <= 6 &&
                                      idx.find_first_not_of("0123456789") == std::string::npos));
    if (!ok) {
      ErrorContext ctx;
      ctx.rule = "header.Last-Event-ID";
      return Fail(call, Status::Invalid("Last-Event-ID must be <position>.<index> as sent in "
                                        "the id: field, got " +
                                            last_id.substr(0, 40),
                                        ctx));
    }
    after = std::stoll(pos);
    after_index = dot == std::string::npos ? -1 : std::stoi(idx);
  }
  metrics_
      ->GetCounter("sidelog_http_requests_total", "HTTP requests by route, method and code.",
                   {{"route", call.route}, {"method", call.method}, {"code", "200"}})
      .Inc();
  feed_->Subscribe(call.request, s->name, after, after_index, *types);
}

namespace {

std::map<std::string, StreamReplicationStatus> ReplicationByStream(Replicator* r) {
  std::map<std::string, StreamReplicationStatus> out;
  if (r == nullptr) return out;
  for (auto& s : r->StreamStatus()) out[s.name] = s;
  return out;
}

int64_t Lag(const StreamReplicationStatus* r, int64_t watermark) {
  return r == nullptr || r->last_seq < 0 ? 0 : std::max<int64_t>(0, r->last_seq - watermark);
}

}  // namespace

void Api::Streams(Call& call) {
  auto replication = ReplicationByStream(replicator_);
  Json streams = Json::array();
  for (const auto& s : config_.streams) {
    auto st = log_->Stats(s.name);
    if (!st.ok()) continue;
    streams.push_back(
        {{"name", s.name},
         {"access", s.access == StreamAccess::kWrite ? "write" : "read"},
         {"types", s.types},
         {"entities", st->entities},
         {"commits", st->commits},
         {"events", st->events},
         {"lastPosition", st->last_position},
         {"watermark", st->watermark},
         {"identity", log_->Identity(s.name)},
         {"replicationLag",
          Lag(replication.count(s.name) ? &replication[s.name] : nullptr, st->watermark)}});
  }
  ReplyJson(call, 200, {{"streams", streams}});
}

void Api::StatusRoute(Call& call) {
  auto replication = ReplicationByStream(replicator_);
  Json streams = Json::array();
  for (const auto& s : config_.streams) {
    auto st = log_->Stats(s.name);
    if (!st.ok()) continue;
    const StreamReplicationStatus* r = replication.count(s.name) ? &replication[s.name] : nullptr;
    Json entry = {{"name", s.name},
                  {"lastPosition", st->last_position},
                  {"watermark", st->watermark},
                  {"lag", Lag(r, st->watermark)},
                  {"state", r ? r->state : "ok"}};
    if (r) {
      entry["jetStream"] = {{"name", r->jetstream}, {"lastSequence", r->last_seq}};
    }
    streams.push_back(entry);
  }
  Json nats = {{"state", "disabled"}, {"detail", "standalone mode: no nats: configured"}};
  if (replicator_) {
    nats = {{"state", replicator_->connected() ? "connected" : "disconnected"},
            {"url", config_.nats->url}};
    if (auto why = replicator_->nats_error(); !why.empty()) nats["lastError"] = why;
  }
  const auto& o = log_->options();
  ReplyJson(call, 200,
            {{"service", config_.service},
             {"namespace", config_.ns},
             {"mode", LogModeName(o.mode)},
             {"ready", ready_.load() && !draining_.load()},
             {"uptimeSeconds", std::chrono::duration<double>(Clock::now() - started_).count()},
             {"log",
              {{"path", o.path},
               {"sizeBytes", log_->SizeBytes()},
               {"durability", o.durability == Durability::kFsync ? "fsync" : "normal"},
               {"snapshotEvery", o.snapshot_every}}},
             {"nats", nats},
             {"subscribers", feed_->subscribers()},
             {"subscriptions", deliveries_->List()},
             {"streams", streams}});
}

// ---------------------------------------------------------------------------------------------
// Push subscriptions (docs/subscriptions.md)

void Api::ListSubscriptions(Call& call) {
  ReplyJson(call, 200, {{"subscriptions", deliveries_->List()}});
}

void Api::GetSubscription(Call& call) {
  auto s = deliveries_->Get(call.params["name"]);
  if (!s.ok()) return Fail(call, s.status());
  ReplyJson(call, 200, *s);
}

void Api::ListParked(Call& call) {
  std::optional<int64_t> after, limit;
  if (auto s = IntParam(call.query, "after", 0, INT64_MAX / 2, &after); !s.ok()) {
    return Fail(call, s);
  }
  if (auto s = IntParam(call.query, "limit", 1, 1000, &limit); !s.ok()) return Fail(call, s);
  auto page = deliveries_->Parked(call.params["name"], after.value_or(0),
                                  static_cast<int>(limit.value_or(100)));
  if (!page.ok()) return Fail(call, page.status());
  ReplyJson(call, 200, *page);
}

void Api::ReplayParked(Call& call) {
  auto shared = std::make_shared<Call>(std::move(call));
  shared->request.extract_vector().then(
      [this, shared](const pplx::task<std::vector<unsigned char>>& t) {
        Call& c = *shared;
        std::vector<unsigned char> body;
        try {
          body = t.get();
        } catch (const std::exception& e) {
          return Fail(c, Status::Invalid(std::string("cannot read the body: ") + e.what()));
        }
        std::optional<std::vector<int64_t>> ids;
        if (!body.empty()) {
          ErrorContext ctx;
          ctx.rule = "body.ids";
          Json j = Json::parse(body.begin(), body.end(), nullptr, false);
          if (!j.is_object() || (j.contains("ids") && !j["ids"].is_array())) {
            return Fail(c, Status::Invalid("the body must be empty (replay every parked event) or "
                                           "{\"ids\": [parked event ids]}",
                                           ctx));
          }
          if (j.contains("ids")) {
            ids.emplace();
            for (const auto& id : j["ids"]) {
              if (!id.is_number_integer() || id.get<int64_t>() <= 0) {
                return Fail(c, Status::Invalid("ids must be positive integers", ctx));
              }
              ids->push_back(id.get<int64_t>());
            }
          }
        }
        auto r = deliveries_->Replay(c.params["name"], ids);
        if (!r.ok()) return Fail(c, r.status());
        ReplyJson(c, 202, *r);
      });
}

void Api::DiscardParked(Call& call) {
  const std::string& raw = call.params["id"];
  if (raw.empty() || raw.size() > 18 || raw.find_first_not_of("0123456789") != std::string::npos) {
    ErrorContext ctx;
    ctx.rule = "path.id";
    return Fail(call, Status::Invalid("a parked event id is a positive integer, got \"" +
                                          raw.substr(0, 40) + "\"",
                                      ctx));
  }
  if (auto s = deliveries_->Discard(call.params["name"], std::stoll(raw)); !s.ok()) {
    return Fail(call, s);
  }
  http_response resp(web::http::status_codes::NoContent);
  Finish(call, resp);
}

void Api::Livez(Call& call) { ReplyJson(call, 200, {{"status", "ok"}}); }

void Api::Readyz(Call& call) {
  bool ready = ready_.load() && !draining_.load();
  ReplyJson(call, ready ? 200 : 503,
            {{"status", ready ? "ready" : (draining_ ? "draining" : "starting")}});
}

void Api::MetricsRoute(Call& call) {
  http_response resp(web::http::status_codes::OK);
  resp.set_body(metrics_->Render(), "text/plain; version=0.0.4; charset=utf-8");
  Finish(call, resp);
}

}  // namespace sidelog::sidecar
