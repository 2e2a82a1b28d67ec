// Fault injection for tests: named points where a test build can be told, through the
// environment, to crash, and values (a disk delay, a clock offset) a test can change while the
// process runs. Compiled only with SIDELOG_FAULT_INJECTION (defined when the tests are built);
// in other builds FaultPoint is always false, FaultValue always 0, and they cost nothing.
//
//   SIDELOG_FAULT=crash-after-puback   die (_exit 137) between a PubAck and the local write
//   SIDELOG_FAULT_DISK_DELAY_FILE=F    every write and sync of the log's files first sleeps the
//                                      milliseconds written in F (a slow or stalled disk)
//   SIDELOG_FAULT_CLOCK_FILE=F         the wall clock is off by the microseconds written in F
//                                      (negative: a jump backwards)
// Files are read again at most every 20 ms; a missing or empty file means 0.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace sidelog {

inline bool FaultPoint([[maybe_unused]] const char* name) {
#ifdef SIDELOG_FAULT_INJECTION
  static const char* armed = std::getenv("SIDELOG_FAULT");
  return armed && std::strcmp(armed, name) == 0;
#else
  return false;
#endif
}

#ifdef SIDELOG_FAULT_INJECTION
// The integer in the file that the environment variable `env` names, re-read every 20 ms.
class FaultFile {
 public:
  explicit FaultFile(const char* env) {
    const char* path = std::getenv(env);
    if (path != nullptr) path_ = path;
  }
  int64_t Value() {
    if (path_.empty()) return 0;
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
    if (now - read_at_.load(std::memory_order_relaxed) >= 20) {
      read_at_.store(now, std::memory_order_relaxed);
      std::ifstream in(path_);
      int64_t v = 0;
      if (!(in >> v)) v = 0;
      value_.store(v, std::memory_order_relaxed);
    }
    return value_.load(std::memory_order_relaxed);
  }

 private:
  std::string path_;
  std::atomic<int64_t> read_at_{-1000};
  std::atomic<int64_t> value_{0};
};
#endif

// FaultValue("SIDELOG_FAULT_CLOCK_FILE") and the like; 0 outside test builds.
inline int64_t FaultValue([[maybe_unused]] const char* env) {
#ifdef SIDELOG_FAULT_INJECTION
  if (std::strcmp(env, "SIDELOG_FAULT_CLOCK_FILE") == 0) {
    static FaultFile clock("SIDELOG_FAULT_CLOCK_FILE");
    return clock.Value();
  }
  if (std::strcmp(env, "SIDELOG_FAULT_DISK_DELAY_FILE") == 0) {
    static FaultFile delay("SIDELOG_FAULT_DISK_DELAY_FILE");
    return delay.Value();
  }
#endif
  return 0;
}

}  // namespace sidelog
