// The sidecar's count of each stream (GET /v1/streams): events stored and the last position,
// for lag and rebuild progress. The consolidator reads every event of its sources, so
// "events stored - events read" is the lag in events.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "sidelog/status.h"

namespace sidelog::consolidator {

struct StreamStats {
  int64_t events = 0;
  int64_t watermark = 0;  // the last position readers may see
};

// By stream name. Unavailable when the sidecar cannot be reached or answers an error.
Result<std::map<std::string, StreamStats>> FetchStreamStats(const std::string& sidecar_url);

}  // namespace sidelog::consolidator
