// How far each source stream goes, for lag and rebuild progress.
//  - From a sidecar (GET /v1/streams): events stored and the watermark. The consolidator reads
//    every event of its sources, so "events stored - events read" is the lag in events.
//  - From JetStream (stream info): the last sequence only; JetStream counts messages
//    (commits), not events, so events is -1 and lag and progress are counted in positions.
// Both say which stream the positions belong to (`identity`), so a checkpoint kept for another
// stream of the same name is found out (Consolidator, "source reset").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "config.h"
#include "sidelog/jetstream.h"
#include "sidelog/status.h"

namespace sidelog::consolidator {

struct StreamStats {
  int64_t events = -1;    // -1: not known (JetStream)
  int64_t watermark = 0;  // the last position readers may see
  // The last position the stream holds anywhere: the watermark plus what the sidecar has yet
  // to replicate (JetStream: the last sequence). A checkpoint past it belongs to another stream.
  int64_t last = 0;
  // Which stream the positions belong to ("" when the source does not say): a sidecar's
  // identity ("jetstream:<created ns>" or "log:<log id>"), or "jetstream:<created ns>".
  std::string identity;
};

// Thread-safe. Keeps one NATS connection when the config reads from JetStream.
class StreamStatsSource {
 public:
  explicit StreamStatsSource(const ConsolidatorConfig& config) : config_(config) {}

  // By stream name. Unavailable when the sidecar or NATS cannot be reached or answers an error.
  Result<std::map<std::string, StreamStats>> Fetch();

 private:
  Result<std::map<std::string, StreamStats>> FromSidecar();
  Result<std::map<std::string, StreamStats>> FromJetStream();

  const ConsolidatorConfig& config_;
  std::mutex mu_;
  std::unique_ptr<JetStream> js_;
};

}  // namespace sidelog::consolidator
