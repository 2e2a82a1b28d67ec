// Fault injection for tests: named points where a test build can be told, through the
// environment, to crash. Compiled only with SIDELOG_FAULT_INJECTION (defined when the tests
// are built); in other builds FaultPoint is always false and costs nothing.
//
//   SIDELOG_FAULT=crash-after-puback   die (_exit 137) between a PubAck and the local write
#pragma once

#include <cstdlib>
#include <cstring>

namespace sidelog {

inline bool FaultPoint([[maybe_unused]] const char* name) {
#ifdef SIDELOG_FAULT_INJECTION
  static const char* armed = std::getenv("SIDELOG_FAULT");
  return armed && std::strcmp(armed, name) == 0;
#else
  return false;
#endif
}

}  // namespace sidelog
