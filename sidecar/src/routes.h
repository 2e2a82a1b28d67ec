// The sidecar's route table: method + path template -> handler. The table is data, so the
// OpenAPI test can compare it with docs/api/openapi.yaml, and metrics label requests by template
// (never by raw path).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace sidelog::sidecar {

struct RouteMatch {
  std::string template_path;                  // e.g. "/v1/streams/{stream}/events"
  std::map<std::string, std::string> params;  // decoded path parameters
};

// Splits a raw (percent-encoded) path into decoded segments. Returns false on a malformed
// escape or an empty segment in the middle.
bool SplitPath(const std::string& raw_path, std::vector<std::string>* segments);

// Matches decoded segments against "/a/{x}/b" templates.
bool MatchTemplate(const std::string& template_path, const std::vector<std::string>& segments,
                   std::map<std::string, std::string>* params);

}  // namespace sidelog::sidecar
