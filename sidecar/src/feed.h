// Feed: everything that waits for a stream's watermark to move, served by one thread.
//
//  - SSE subscribers (`GET .../events?follow=true`): each has a cursor and a response body
//    buffer. The feed thread reads new events from the log and writes them into the buffers.
//    Writes never block: a subscriber whose unread buffer exceeds `max_buffered_bytes` is not
//    read for until it drains, and one that stays stuck is dropped. So a slow subscriber never
//    slows appends or other subscribers. Heartbeats (SSE comments) go out every
//    `heartbeat_ms`; a failed send (the client went away) removes the subscriber.
//  - Position waiters (`?minPosition=`): called once when the watermark reaches the position,
//    or with false at their deadline.
//
// Thread-safe. Stop() closes every subscription (their responses end) and fails every waiter.
#pragma once

#include <cpprest/http_msg.h>
#include <cpprest/producerconsumerstream.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "sidelog/event_log.h"
#include "sidelog/metrics.h"

namespace sidelog::sidecar {

struct FeedOptions {
  int heartbeat_ms = 15000;
  size_t max_buffered_bytes = 8 << 20;
  int stuck_drop_ms = 60000;  // a subscriber over the buffer limit this long is dropped
};

class Feed {
 public:
  Feed(EventLog* log, Metrics* metrics, FeedOptions options);
  ~Feed();

  // Starts streaming `stream` to `request` as text/event-stream, from after position `after`
  // (and, when `after_index` >= 0, after that event of commit `after`: Last-Event-ID).
  // `types` filters. Replies on the caller's thread; never blocks.
  void Subscribe(const web::http::http_request& request, const std::string& stream, int64_t after,
                 int after_index, std::set<std::string> types);

  // Calls `done(true)` once the stream's watermark is >= position, or `done(false)` at the
  // deadline. `done` runs on the feed thread or the caller's.
  void WaitFor(const std::string& stream, int64_t position, std::chrono::milliseconds timeout,
               std::function<void(bool)> done);

  size_t subscribers() const;
  void Stop();

 private:
  struct Subscriber;
  struct Waiter {
    std::string stream;
    int64_t position;
    std::chrono::steady_clock::time_point deadline;
    std::function<void(bool)> done;
  };
  void Run();
  // Writes what the subscriber has not seen; false when it should be dropped.
  bool Pump(Subscriber& s, bool heartbeat_due);

  EventLog* log_;
  Metrics* metrics_;
  FeedOptions options_;
  int log_subscription_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool dirty_ = false;
  std::list<std::shared_ptr<Subscriber>> subscribers_;
  std::list<Waiter> waiters_;
  std::thread thread_;
};

}  // namespace sidelog::sidecar
