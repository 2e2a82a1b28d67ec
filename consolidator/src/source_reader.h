// SourceReader: reads one source stream, in order, from right after a cursor, into an
// EventQueue. Two kinds: StreamReader (a sidecar's stream API) and JetStreamReader (JetStream,
// by push or pull). MakeSourceReader picks the one the config asks for.
//
// Start and Stop come from one owner thread; the getters are safe from any thread. Stop()
// closes the queue and returns when nothing reads any more.
#pragma once

#include <memory>
#include <string>

#include "config.h"
#include "cursor.h"
#include "event_queue.h"

namespace sidelog::consolidator {

class SourceReader {
 public:
  virtual ~SourceReader() = default;
  // Resets the queue and starts reading the events after `after`. With `identity` set (the
  // identity recorded with the checkpoint, StreamStats::identity), every (re)connection first
  // checks that the stream is still that one, and reads nothing from another one: its position
  // would mean nothing there (last_error() says "SourceReset: ...").
  virtual void Start(Cursor after, const std::string& identity) = 0;
  virtual void Stop() = 0;
  // True once caught up with the stream and reading live.
  virtual bool following() const = 0;
  // The last failure ("" when the last attempt worked).
  virtual std::string last_error() const = 0;
};

std::unique_ptr<SourceReader> MakeSourceReader(const ConsolidatorConfig& config,
                                               const std::string& stream, EventQueue* queue);

}  // namespace sidelog::consolidator
