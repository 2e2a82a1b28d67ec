// Percent-decoding of request paths and query strings (RFC 3986), refusing what does not
// decode instead of throwing: a '%' must be followed by two hexadecimal digits.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace sidelog {

// The decoded text, or nothing when a '%' is not followed by two hexadecimal digits.
std::optional<std::string> PercentDecode(std::string_view text);

// "a=1&b=x%20y" as {a: "1", b: "x y"}; a key without '=' has an empty value, the last of
// repeated keys wins. Nothing when a key or value does not decode.
std::optional<std::map<std::string, std::string>> DecodeQuery(std::string_view query);

}  // namespace sidelog
