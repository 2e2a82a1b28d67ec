// The consolidator's problem+json responses; the document comes from sidelog/problem.h, the same
// mapping the sidecar uses.
#pragma once

#include <cpprest/http_msg.h>

#include "sidelog/event.h"
#include "sidelog/status.h"

namespace sidelog::consolidator {

web::http::http_response ProblemResponse(const Status& status);

// For HTTP-level errors (404 no route, 405).
web::http::http_response HttpProblem(int http_status, const std::string& title,
                                     const std::string& detail);

}  // namespace sidelog::consolidator
