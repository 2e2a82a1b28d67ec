// EventQueue: the bounded hand-over between a StreamReader (producer) and a Follower
// (consumer) of one source. Items are events in stream order, or cursor marks saying "every
// event up to here was read" (the end of a catch-up page). Push blocks while the queue is
// full, so a stalled database slows the reader instead of growing memory.
// Safe for one producer and one consumer thread; Close() wakes both.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>

#include "cursor.h"
#include "sidelog/event.h"

namespace sidelog::consolidator {

struct QueueItem {
  std::optional<StoredEvent> event;  // empty for a cursor mark
  Cursor cursor;                     // the event's (position, index), or the mark
};

class EventQueue {
 public:
  explicit EventQueue(size_t capacity) : capacity_(capacity) {}

  // Waits for room; false (dropping the item) once closed.
  bool Push(QueueItem item);

  // The oldest item, waiting until `until`; empty on timeout or once closed.
  std::optional<QueueItem> Pop(std::chrono::steady_clock::time_point until);

  // Wakes every waiter; Push fails from now on. Items still queued are dropped.
  void Close();
  // Empties the queue and accepts pushes again.
  void Reset();

  size_t size() const;
  // The time of the oldest queued event, or 0 when there is none.
  TimeMicros OldestTime() const;

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::deque<QueueItem> items_;
  bool closed_ = false;
};

}  // namespace sidelog::consolidator
