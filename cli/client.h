// A thin client of the sidecar API for the CLI: requests with JSON bodies, problem+json turned
// into readable errors, and SSE following. Not thread-safe; one per command.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "sidelog/event.h"

namespace sidelog::cli {

struct Response {
  int status = 0;
  Json body;  // parsed JSON, or null
  std::string etag;
};

class Client {
 public:
  explicit Client(std::string base_url);

  // Sends a request. On transport failure, returns status 0 and sets *error.
  Response Send(const std::string& method, const std::string& path_and_query,
                const Json& body = nullptr, const std::map<std::string, std::string>& headers = {},
                std::string* error = nullptr);

  // Follows an SSE stream, calling `on_event(id, type, data)` per event until the stream ends or
  // `on_event` returns false. `keep_going`, if set, is asked at every line (heartbeats
  // included), so a caller can stop a quiet stream. Returns an error message, or "" when the
  // stream ended or was stopped.
  std::string Follow(
      const std::string& path_and_query, const std::string& last_event_id,
      const std::function<bool(const std::string&, const std::string&, const Json&)>& on_event,
      const std::function<bool()>& keep_going = nullptr);

  const std::string& base_url() const { return base_url_; }

 private:
  std::string base_url_;
};

// "Conflict (409): expected version 1, but ..." from a problem document.
std::string ProblemText(const Response& r);

}  // namespace sidelog::cli
