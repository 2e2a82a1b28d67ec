#include "sidelog/duration.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

namespace sidelog {

Result<std::chrono::nanoseconds> ParseDuration(const std::string& text) {
  auto invalid = [&] {
    return Status::Invalid("\"" + text + "\" is not a duration like 200ms, 5s or 1m30s");
  };
  if (text == "0") return std::chrono::nanoseconds(0);
  if (text.empty()) return invalid();
  double total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
      ++i;
    }
    if (i == start) return invalid();
    std::string number = text.substr(start, i - start);
    if (number.front() == '.' || number.back() == '.' || number.find('.') != number.rfind('.')) {
      return invalid();
    }
    size_t unit_start = i;
    while (i < text.size() && !std::isdigit(static_cast<unsigned char>(text[i])) &&
           text[i] != '.') {
      ++i;
    }
    std::string unit = text.substr(unit_start, i - unit_start);
    double scale = 0;
    if (unit == "ns") {
      scale = 1;
    } else if (unit == "us" || unit == "\xC2\xB5s") {
      scale = 1e3;
    } else if (unit == "ms") {
      scale = 1e6;
    } else if (unit == "s") {
      scale = 1e9;
    } else if (unit == "m") {
      scale = 60e9;
    } else if (unit == "h") {
      scale = 3600e9;
    } else {
      return invalid();
    }
    total += std::strtod(number.c_str(), nullptr) * scale;
  }
  if (total > 9e18) return invalid();
  return std::chrono::nanoseconds(static_cast<int64_t>(std::llround(total)));
}

}  // namespace sidelog
