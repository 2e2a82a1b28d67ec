// Status as an RFC 7807 problem document: the one mapping from core's error codes to HTTP
// statuses and problem fields, shared by every Sidelog HTTP server. Transport-free: servers wrap
// the JSON in their own response type with media type application/problem+json.
#pragma once

#include <string>

#include "sidelog/event.h"
#include "sidelog/status.h"

namespace sidelog {

// Invalid 400, Forbidden 403, NotFound 404, Conflict 409, Gone 410, TooLarge 413, Rejected 422,
// Internal 500, Unavailable 503.
int HttpStatus(Status::Code code);

// {type, title, status, detail} plus the context fields that are set (stream, entity,
// expectedVersion, currentVersion, rule, reason, outcomeUnknown for Unavailable, requestId).
Json ProblemJson(const Status& status, const std::string& request_id = "");

// A problem for HTTP-level errors that core never sees (405, 414, 415, 431, ...).
Json HttpProblemJson(int http_status, const std::string& title, const std::string& detail,
                     const std::string& request_id = "");

}  // namespace sidelog
