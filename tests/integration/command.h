// Runs a shell command for a test: its standard output (add 2>&1 for the errors too) and its
// exit code (-1 when it did not exit normally).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace sidelog::testing {

inline std::string RunCommand(const std::string& cmd, int* exit_code = nullptr) {
  FILE* f = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while (f != nullptr && (n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const int status = f != nullptr ? pclose(f) : -1;
  if (exit_code != nullptr) *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

}  // namespace sidelog::testing
