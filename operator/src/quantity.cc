#include "quantity.h"

#include <regex>

namespace sidelog::op {

// Exact integer arithmetic: the digits as one integer, a power of ten and a binary multiplier,
// so "1.1k" is 1100 and not 1101 after a floating-point ceil.
Result<int64_t> ParseQuantity(const Json& value) {
  if (value.is_number_integer()) return value.get<int64_t>();
  if (!value.is_string()) return Status::Invalid(value.dump() + " is not a quantity");
  const std::string text = value.get<std::string>();
  auto invalid = [&](const std::string& why) { return Status::Invalid("\"" + text + "\" " + why); };
  static const std::regex re(
      R"(^([+-]?)([0-9]*)(?:\.([0-9]*))?((?:[KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$)");
  std::smatch m;
  if (!std::regex_match(text, m, re) || (m[2].length() == 0 && m[3].length() == 0)) {
    return invalid("is not a quantity like 512Mi, 10Gi or 1e9");
  }
  const std::string digits = m[2].str() + m[3].str();
  if (digits.size() > 30) return invalid("has too many digits");
  __int128 mantissa = 0;
  for (char c : digits) mantissa = mantissa * 10 + (c - '0');
  int exp10 = -static_cast<int>(m[3].length());
  __int128 multiplier = 1;
  const std::string suffix = m[4].str();
  if (suffix.size() == 2 && suffix[1] == 'i') {
    for (size_t i = 0; i <= std::string("KMGTPE").find(suffix[0]); ++i) multiplier *= 1024;
  } else if (suffix == "n") {
    exp10 -= 9;
  } else if (suffix == "u") {
    exp10 -= 6;
  } else if (suffix == "m") {
    exp10 -= 3;
  } else if (suffix.size() == 1) {
    exp10 += 3 * static_cast<int>(std::string("kMGTPE").find(suffix[0]) + 1);
  } else if (!suffix.empty()) {
    exp10 += std::stoi(suffix.substr(1));
  }
  const __int128 limit = static_cast<__int128>(INT64_MAX);
  __int128 v = mantissa * multiplier;
  for (; exp10 > 0; --exp10) {
    v *= 10;
    if (v > limit) return invalid("is too large");
  }
  __int128 divisor = 1;
  for (; exp10 < 0 && divisor <= limit * 10; ++exp10) divisor *= 10;
  if (exp10 < 0) return v == 0 ? Result<int64_t>(int64_t{0}) : Result<int64_t>(m[1] == "-" ? 0 : 1);
  v = (v + divisor - 1) / divisor;  // round up
  if (v > limit) return invalid("is too large");
  return static_cast<int64_t>(m[1] == "-" ? -v : v);
}

}  // namespace sidelog::op
