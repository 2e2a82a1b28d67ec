// The one place where the consolidator's Status codes become HTTP: RFC 7807
// application/problem+json, shaped like the sidecar's (type, title, status, detail, and the
// context fields that are set).
#pragma once

#include <cpprest/http_msg.h>

#include "sidelog/event.h"
#include "sidelog/status.h"

namespace sidelog::consolidator {

// Invalid 400, Forbidden 403, NotFound 404, Conflict 409, TooLarge 413, Rejected 422,
// Internal 500, Unavailable 503.
int HttpStatus(Status::Code code);

web::http::http_response ProblemResponse(const Status& status);

// For HTTP-level errors (404 no route, 405).
web::http::http_response HttpProblem(int http_status, const std::string& title,
                                     const std::string& detail);

}  // namespace sidelog::consolidator
