#include "work_queue.h"

#include <algorithm>
#include <cmath>

namespace sidelog::op {

WorkQueue::WorkQueue(WorkQueueOptions options)
    : options_(options), tokens_(options.burst), tokens_at_(Clock::now()) {}

void WorkQueue::AddLocked(const std::string& key) {
  if (shut_down_) return;
  if (processing_.count(key)) {
    dirty_.insert(key);
    return;
  }
  if (queued_.insert(key).second) {
    queue_.push_back(key);
    cv_.notify_one();
  }
}

void WorkQueue::Add(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  AddLocked(key);
}

void WorkQueue::AddAfter(const std::string& key, std::chrono::milliseconds delay) {
  std::lock_guard<std::mutex> lock(mu_);
  if (delay.count() <= 0) {
    AddLocked(key);
    return;
  }
  // One pending delay per key is enough: keep the earliest.
  auto due = Clock::now() + delay;
  for (auto it = delayed_.begin(); it != delayed_.end(); ++it) {
    if (it->second == key) {
      if (it->first <= due) return;
      delayed_.erase(it);
      break;
    }
  }
  delayed_.emplace(due, key);
  cv_.notify_all();
}

std::chrono::milliseconds WorkQueue::BackoffLocked(const std::string& key) {
  int n = failures_[key]++;
  double ms = static_cast<double>(options_.base_delay.count()) * std::pow(2.0, std::min(n, 30));
  return std::chrono::milliseconds(
      static_cast<int64_t>(std::min(ms, static_cast<double>(options_.max_delay.count()))));
}

std::chrono::milliseconds WorkQueue::BucketDelayLocked() {
  auto now = Clock::now();
  double elapsed = std::chrono::duration<double>(now - tokens_at_).count();
  tokens_ = std::min<double>(options_.burst, tokens_ + elapsed * options_.qps);
  tokens_at_ = now;
  tokens_ -= 1;  // reserve one, possibly in the future
  if (tokens_ >= 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(-tokens_ / options_.qps * 1000)));
}

void WorkQueue::AddRateLimited(const std::string& key, std::chrono::milliseconds at_least) {
  std::chrono::milliseconds delay;
  {
    std::lock_guard<std::mutex> lock(mu_);
    delay = std::max({BackoffLocked(key), BucketDelayLocked(), at_least});
  }
  AddAfter(key, delay);
}

void WorkQueue::Forget(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  failures_.erase(key);
}

int WorkQueue::Failures(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

bool WorkQueue::Get(std::string* key) {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (shut_down_) return false;
    auto now = Clock::now();
    while (!delayed_.empty() && delayed_.begin()->first <= now) {
      std::string k = delayed_.begin()->second;
      delayed_.erase(delayed_.begin());
      AddLocked(k);
    }
    if (!queue_.empty()) {
      *key = queue_.front();
      queue_.pop_front();
      queued_.erase(*key);
      processing_.insert(*key);
      return true;
    }
    if (delayed_.empty()) {
      cv_.wait(lock);
    } else {
      // A copy: wait_until reads its deadline again after waking, when another thread may
      // have erased that entry (AddressSanitizer found the use after free).
      const Clock::time_point until = delayed_.begin()->first;
      cv_.wait_until(lock, until);
    }
  }
}

void WorkQueue::Done(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  processing_.erase(key);
  if (dirty_.erase(key)) AddLocked(key);
}

void WorkQueue::ShutDown() {
  std::lock_guard<std::mutex> lock(mu_);
  shut_down_ = true;
  cv_.notify_all();
}

size_t WorkQueue::Len() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

}  // namespace sidelog::op
