#include "sidelog/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>

namespace sidelog::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::string g_component = "sidelog";  // written once by Init, before threads start

std::shared_ptr<spdlog::logger> Logger() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = spdlog::stderr_logger_mt("sidelog-json");
    l->set_pattern("%v");
    l->set_level(spdlog::level::trace);
    l->flush_on(spdlog::level::trace);
    return l;
  }();
  return logger;
}

const char* Name(Level l) {
  switch (l) {
    case Level::kTrace:
      return "trace";
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
    case Level::kCritical:
      return "critical";
    default:
      return "off";
  }
}

}  // namespace

void Init(const std::string& component, const std::string& level) {
  g_component = component;
  Level l = Level::kInfo;
  for (int i = 0; i <= static_cast<int>(Level::kOff); ++i) {
    if (level == Name(static_cast<Level>(i))) l = static_cast<Level>(i);
  }
  g_level = static_cast<int>(l);
  Logger();
}

bool Enabled(Level level) { return static_cast<int>(level) >= g_level.load(); }

void Write(Level level, const std::string& msg, const Json& fields) {
  if (!Enabled(level) || level == Level::kOff) return;
  Json line = {{"time", FormatTime(NowMicros())},
               {"level", Name(level)},
               {"component", g_component},
               {"msg", msg}};
  if (fields.is_object()) {
    for (const auto& [k, v] : fields.items()) line[k] = v;
  }
  Logger()->info(line.dump(-1, ' ', false, Json::error_handler_t::replace));
}

}  // namespace sidelog::log
