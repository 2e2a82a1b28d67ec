#include "problem.h"

namespace sidelog::consolidator {
namespace {

web::http::http_response Respond(int http_status, const Json& body) {
  web::http::http_response resp(static_cast<web::http::status_code>(http_status));
  resp.set_body(body.dump(), "application/problem+json");
  return resp;
}

// The same slugs and titles as the sidecar's problems.
const char* Slug(Status::Code code) {
  switch (code) {
    case Status::Code::kInvalid:
      return "invalid-request";
    case Status::Code::kNotFound:
      return "not-found";
    case Status::Code::kForbidden:
      return "forbidden";
    case Status::Code::kConflict:
      return "conflict";
    case Status::Code::kGone:
      return "gone";
    case Status::Code::kRejected:
      return "rejected";
    case Status::Code::kTooLarge:
      return "too-large";
    case Status::Code::kUnavailable:
      return "unavailable";
    default:
      return "internal";
  }
}

const char* Title(Status::Code code) {
  switch (code) {
    case Status::Code::kInvalid:
      return "Invalid request";
    case Status::Code::kNotFound:
      return "Not found";
    case Status::Code::kForbidden:
      return "Forbidden";
    case Status::Code::kConflict:
      return "Conflict";
    case Status::Code::kGone:
      return "Gone";
    case Status::Code::kRejected:
      return "Rejected";
    case Status::Code::kTooLarge:
      return "Too large";
    case Status::Code::kUnavailable:
      return "Unavailable";
    default:
      return "Internal error";
  }
}

}  // namespace

int HttpStatus(Status::Code code) {
  switch (code) {
    case Status::Code::kOk:
      return 200;
    case Status::Code::kInvalid:
      return 400;
    case Status::Code::kForbidden:
      return 403;
    case Status::Code::kNotFound:
      return 404;
    case Status::Code::kConflict:
      return 409;
    case Status::Code::kGone:
      return 410;
    case Status::Code::kTooLarge:
      return 413;
    case Status::Code::kRejected:
      return 422;
    case Status::Code::kUnavailable:
      return 503;
    case Status::Code::kInternal:
      return 500;
  }
  return 500;
}

web::http::http_response ProblemResponse(const Status& status) {
  const auto& c = status.context();
  Json p = {{"type", std::string("https://sidelog.dev/problems/") + Slug(status.code())},
            {"title", Title(status.code())},
            {"status", HttpStatus(status.code())},
            {"detail", status.message()}};
  if (!c.stream.empty()) p["stream"] = c.stream;
  if (!c.entity.empty()) p["entity"] = c.entity;
  if (!c.rule.empty()) p["rule"] = c.rule;
  if (!c.reason.empty()) p["reason"] = c.reason;
  auto resp = Respond(HttpStatus(status.code()), p);
  if (status.code() == Status::Code::kUnavailable) resp.headers().add("Retry-After", "1");
  return resp;
}

web::http::http_response HttpProblem(int http_status, const std::string& title,
                                     const std::string& detail) {
  return Respond(http_status,
                 {{"type", "https://sidelog.dev/problems/http-" + std::to_string(http_status)},
                  {"title", title},
                  {"status", http_status},
                  {"detail", detail}});
}

}  // namespace sidelog::consolidator
