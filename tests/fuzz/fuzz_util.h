// Helpers shared by the fuzz targets.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace sidelog::fuzz {

// Stops the process with a message: libFuzzer reports it as a crash and saves the input.
[[noreturn]] inline void Fail(const std::string& what) {
  std::fprintf(stderr, "fuzz invariant broken: %s\n", what.c_str());
  std::abort();
}

inline std::string_view Bytes(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Splits `text` at the first `n` occurrences of `sep`; the last part holds the rest.
inline std::vector<std::string> SplitN(std::string_view text, std::string_view sep, size_t n) {
  std::vector<std::string> parts;
  while (parts.size() < n) {
    auto at = text.find(sep);
    if (at == std::string_view::npos) break;
    parts.emplace_back(text.substr(0, at));
    text.remove_prefix(at + sep.size());
  }
  parts.emplace_back(text);
  return parts;
}

// A fresh directory under $TMPDIR (or /tmp) for one fuzzing process.
inline std::string TempDir(const char* name) {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/" + name + "-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) Fail("cannot create a temporary directory");
  return buf.data();
}

}  // namespace sidelog::fuzz
