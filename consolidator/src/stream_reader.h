// StreamReader: reads one stream from the sidecar's stream API, in order, from right after a
// cursor, into an EventQueue:
//
//   1. catch-up: GET /v1/streams/{s}/events?from=P&limit=1000 until a short page (the end);
//      pages never split a commit, so each page ends with a cursor mark for its `next`;
//   2. follow:   GET /v1/streams/{s}/events?follow=true with Last-Event-ID "<position>.<index>"
//      (Server-Sent Events, one per event) until the connection ends.
//
// Every event of the stream is read (the consolidator filters types itself), so the count of
// events read matches the sidecar's count and lag in events is exact.
// On any failure it waits (1 s, doubling to 30 s) and resumes after the last event it queued.
//
// One thread per reader. Start and Stop come from one owner thread; the getters are safe from
// any thread. Stop() cancels the HTTP call in flight and closes the queue.
#pragma once

#include <cpprest/http_client.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "cursor.h"
#include "event_queue.h"
#include "source_reader.h"

namespace sidelog::consolidator {

class StreamReader : public SourceReader {
 public:
  StreamReader(std::string sidecar_url, std::string stream, EventQueue* queue);
  ~StreamReader() override;
  StreamReader(const StreamReader&) = delete;
  StreamReader& operator=(const StreamReader&) = delete;

  // Resets the queue and starts reading the events after `after`.
  void Start(Cursor after, const std::string& identity) override;
  // Stops reading and closes the queue; returns when the thread has ended.
  void Stop() override;

  // True while the catch-up is done and the SSE subscription is open.
  bool following() const override { return following_.load(); }
  // The last failure ("" when the last attempt worked).
  std::string last_error() const override;

 private:
  void Run(Cursor after, const std::string& identity);
  // Reads catch-up pages until the end of the stream; advances *after.
  Status CatchUp(Cursor* after);
  // Follows the SSE feed until it ends; advances *after.
  Status Follow(Cursor* after);
  // Ok when the sidecar's stream is the one of `identity` (or either is not known).
  Status CheckIdentity(const std::string& identity);
  // Queues an event read from the sidecar unless it is at or before *after.
  Status Deliver(const Json& cloud_event, Cursor* after);
  void SetError(const std::string& error);

  const std::string url_;
  const std::string stream_;
  EventQueue* queue_;

  std::thread thread_;
  std::atomic<bool> following_{false};
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  pplx::cancellation_token_source cancel_;
  std::string last_error_;
};

}  // namespace sidelog::consolidator
