// The one place where core's Status codes become HTTP: RFC 7807 application/problem+json.
#pragma once

#include <cpprest/http_msg.h>

#include <string>

#include "sidelog/event.h"
#include "sidelog/status.h"

namespace sidelog::sidecar {

// The document itself comes from sidelog/problem.h (shared with the consolidator).
// A problem+json response, with Retry-After for Unavailable errors that say when.
web::http::http_response ProblemResponse(const Status& status, const std::string& request_id);

// A problem for HTTP-level errors that core never sees (415, 414, 431, 405).
web::http::http_response HttpProblem(int http_status, const std::string& title,
                                     const std::string& detail, const std::string& request_id);

}  // namespace sidelog::sidecar
