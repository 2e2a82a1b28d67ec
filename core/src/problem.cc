#include "sidelog/problem.h"

namespace sidelog {
namespace {

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
    case Status::Code::kStorageFull:
      return "storage-full";
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
      return "Rejected by the stream's rules";
    case Status::Code::kTooLarge:
      return "Too large";
    case Status::Code::kUnavailable:
      return "Unavailable";
    case Status::Code::kStorageFull:
      return "Insufficient storage";
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
    case Status::Code::kStorageFull:
      return 507;
    case Status::Code::kInternal:
      return 500;
  }
  return 500;
}

Json ProblemJson(const Status& status, const std::string& request_id) {
  const auto& c = status.context();
  Json p = {{"type", std::string("https://sidelog.dev/problems/") + Slug(status.code())},
            {"title", Title(status.code())},
            {"status", HttpStatus(status.code())},
            {"detail", status.message()}};
  if (!c.stream.empty()) p["stream"] = c.stream;
  if (!c.entity.empty()) p["entity"] = c.entity;
  if (!c.expected_version.empty()) p["expectedVersion"] = c.expected_version;
  if (c.current_version) p["currentVersion"] = *c.current_version;
  if (!c.rule.empty()) p["rule"] = c.rule;
  if (!c.reason.empty()) p["reason"] = c.reason;
  if (status.code() == Status::Code::kUnavailable) p["outcomeUnknown"] = c.outcome_unknown;
  if (!request_id.empty()) p["requestId"] = request_id;
  return p;
}

Json HttpProblemJson(int http_status, const std::string& title, const std::string& detail,
                     const std::string& request_id) {
  Json p = {{"type", "https://sidelog.dev/problems/http-" + std::to_string(http_status)},
            {"title", title},
            {"status", http_status},
            {"detail", detail}};
  if (!request_id.empty()) p["requestId"] = request_id;
  return p;
}

}  // namespace sidelog
