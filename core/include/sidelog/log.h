// Structured logs: one JSON object per line on stderr, through spdlog.
//   {"time":"2026-11-26T10:00:00.123456Z","level":"info","component":"sidecar","msg":"...",...}
// Safe from any thread.
#pragma once

#include <string>

#include "sidelog/event.h"

namespace sidelog::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };

// Sets the component name and the minimum level ("trace" ... "off"; unknown names mean info).
void Init(const std::string& component, const std::string& level);
bool Enabled(Level level);

// Writes one line with `msg` and the members of `fields` (an object, or null).
void Write(Level level, const std::string& msg, const Json& fields = nullptr);

inline void Debug(const std::string& msg, const Json& f = nullptr) { Write(Level::kDebug, msg, f); }
inline void Info(const std::string& msg, const Json& f = nullptr) { Write(Level::kInfo, msg, f); }
inline void Warn(const std::string& msg, const Json& f = nullptr) { Write(Level::kWarn, msg, f); }
inline void Error(const std::string& msg, const Json& f = nullptr) { Write(Level::kError, msg, f); }

}  // namespace sidelog::log
