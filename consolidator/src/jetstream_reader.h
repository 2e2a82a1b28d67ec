// JetStreamReader: reads a source stream straight from JetStream (SIDELOG_<namespace>_<stream>)
// with an ephemeral consumer that starts right after the cursor (the database checkpoint is the
// source of truth; no durable consumer is left behind):
//  - push: an ordered push consumer; libnats recreates it after gaps and reconnects;
//  - pull: a pull consumer fetching batches of up to maxEvents commits.
// Each message is one commit; its events are queued with (position = sequence, index). On a
// failure (NATS away, the consumer gone) it waits (1 s doubling to 30 s) and starts a new
// consumer after the last event it queued.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "sidelog/jetstream.h"
#include "source_reader.h"

namespace sidelog::consolidator {

class JetStreamReader : public SourceReader {
 public:
  JetStreamReader(const ConsolidatorConfig& config, std::string stream, EventQueue* queue);
  ~JetStreamReader() override;

  void Start(Cursor after, const std::string& identity) override;
  void Stop() override;
  bool following() const override { return following_.load(); }
  std::string last_error() const override;

 private:
  void Run(Cursor after, const std::string& identity);
  // Reads until an error or Stop; advances *after.
  Status Push(JetStream* js, uint64_t last_seq, Cursor* after);
  Status Pull(JetStream* js, uint64_t last_seq, Cursor* after);
  // Queues the events of one message that come after *after.
  Status Deliver(const JetStreamMessage& m, Cursor* after);
  bool stopping() const;

  const ConsolidatorConfig& config_;
  const std::string stream_;
  const std::string jetstream_name_;
  const std::string subjects_;
  EventQueue* queue_;

  std::thread thread_;
  std::atomic<bool> following_{false};
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::string last_error_;
  // Set when the NATS connection drops: libnats would recreate the consumer on whatever stream
  // has the name after the reconnect, so deliveries stop until the stream is checked again.
  std::shared_ptr<std::atomic<bool>> dropped_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace sidelog::consolidator
