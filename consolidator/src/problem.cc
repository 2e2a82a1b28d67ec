#include "problem.h"

#include "sidelog/problem.h"

namespace sidelog::consolidator {
namespace {

web::http::http_response Respond(int http_status, const Json& body) {
  web::http::http_response resp(static_cast<web::http::status_code>(http_status));
  resp.set_body(body.dump(), "application/problem+json");
  return resp;
}

}  // namespace

web::http::http_response ProblemResponse(const Status& status) {
  auto resp = Respond(sidelog::HttpStatus(status.code()), ProblemJson(status));
  if (status.code() == Status::Code::kUnavailable) resp.headers().add("Retry-After", "1");
  return resp;
}

web::http::http_response HttpProblem(int http_status, const std::string& title,
                                     const std::string& detail) {
  return Respond(http_status, HttpProblemJson(http_status, title, detail));
}

}  // namespace sidelog::consolidator
