#include "routes.h"

#include "sidelog/uri.h"

namespace sidelog::sidecar {

bool SplitPath(const std::string& raw, std::vector<std::string>* segments) {
  segments->clear();
  if (raw.empty() || raw[0] != '/') return false;
  size_t start = 1;
  while (start <= raw.size()) {
    size_t end = raw.find('/', start);
    if (end == std::string::npos) end = raw.size();
    auto decoded = PercentDecode(std::string_view(raw).substr(start, end - start));
    if (!decoded) return false;
    std::string seg = std::move(*decoded);
    if (seg.empty() && end != raw.size()) return false;
    if (!seg.empty() || end != raw.size() || segments->empty()) segments->push_back(seg);
    start = end + 1;
  }
  // A trailing slash leaves an empty last segment: drop it ("/v1/streams/" == "/v1/streams").
  if (!segments->empty() && segments->back().empty()) segments->pop_back();
  return true;
}

bool MatchTemplate(const std::string& tmpl, const std::vector<std::string>& segments,
                   std::map<std::string, std::string>* params) {
  std::vector<std::string> parts;
  size_t start = 1;
  while (start <= tmpl.size()) {
    size_t end = tmpl.find('/', start);
    if (end == std::string::npos) end = tmpl.size();
    parts.push_back(tmpl.substr(start, end - start));
    start = end + 1;
  }
  if (parts.size() != segments.size()) return false;
  std::map<std::string, std::string> found;
  for (size_t i = 0; i < parts.size(); ++i) {
    const auto& p = parts[i];
    if (p.size() > 2 && p.front() == '{' && p.back() == '}') {
      if (segments[i].empty()) return false;
      found[p.substr(1, p.size() - 2)] = segments[i];
    } else if (p != segments[i]) {
      return false;
    }
  }
  *params = std::move(found);
  return true;
}

}  // namespace sidelog::sidecar
