#include "event_queue.h"

namespace sidelog::consolidator {

bool EventQueue::Push(QueueItem item) {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait(lock, [&] { return closed_ || items_.size() < capacity_; });
  if (closed_) return false;
  items_.push_back(std::move(item));
  changed_.notify_all();
  return true;
}

std::optional<QueueItem> EventQueue::Pop(std::chrono::steady_clock::time_point until) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!changed_.wait_until(lock, until, [&] { return closed_ || !items_.empty(); })) {
    return std::nullopt;
  }
  if (closed_ || items_.empty()) return std::nullopt;
  QueueItem item = std::move(items_.front());
  items_.pop_front();
  changed_.notify_all();
  return item;
}

void EventQueue::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  items_.clear();
  changed_.notify_all();
}

void EventQueue::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = false;
  items_.clear();
  changed_.notify_all();
}

size_t EventQueue::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return items_.size();
}

TimeMicros EventQueue::OldestTime() const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& item : items_) {
    if (item.event) return item.event->time;
  }
  return 0;
}

}  // namespace sidelog::consolidator
