#include "problem.h"

#include "sidelog/problem.h"

namespace sidelog::sidecar {
namespace {

web::http::http_response Respond(int http_status, const Json& body) {
  web::http::http_response resp(static_cast<web::http::status_code>(http_status));
  // Details may quote what the client sent (a Host header, a field name) byte for byte:
  // invalid UTF-8 is replaced, never a reason to fail the answer.
  resp.set_body(body.dump(-1, ' ', false, Json::error_handler_t::replace),
                "application/problem+json");
  return resp;
}

}  // namespace

web::http::http_response ProblemResponse(const Status& status, const std::string& request_id) {
  auto resp = Respond(HttpStatus(status.code()), ProblemJson(status, request_id));
  if (auto r = status.context().retry_after_seconds) {
    resp.headers().add("Retry-After", std::to_string(*r));
  }
  return resp;
}

web::http::http_response HttpProblem(int http_status, const std::string& title,
                                     const std::string& detail, const std::string& request_id) {
  return Respond(http_status, HttpProblemJson(http_status, title, detail, request_id));
}

}  // namespace sidelog::sidecar
