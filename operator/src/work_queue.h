// WorkQueue: the keys of objects to reconcile, as client-go's rate-limited queue has them.
//  - Deduplicated: a key queued twice is processed once.
//  - Never processed by two workers at once: a key added while it is being processed is
//    queued again when its worker calls Done.
//  - AddRateLimited delays a key by its own exponential backoff (base, doubling per failure
//    up to max) and by a global token bucket (qps, burst), whichever is later. Forget resets
//    the key's failures.
//  - AddAfter delays a key (periodic refresh, Retry-After).
//
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>

namespace sidelog::op {

struct WorkQueueOptions {
  std::chrono::milliseconds base_delay{100};
  std::chrono::milliseconds max_delay{60000};
  double qps = 50;  // global rate of rate-limited adds
  int burst = 300;
};

class WorkQueue {
 public:
  using Clock = std::chrono::steady_clock;

  explicit WorkQueue(WorkQueueOptions options = {});

  void Add(const std::string& key);
  void AddAfter(const std::string& key, std::chrono::milliseconds delay);
  // Delays by at least `at_least` too.
  void AddRateLimited(const std::string& key,
                      std::chrono::milliseconds at_least = std::chrono::milliseconds(0));
  void Forget(const std::string& key);
  int Failures(const std::string& key) const;

  // Waits for a key that is due; false once ShutDown was called (keys left are dropped).
  bool Get(std::string* key);
  void Done(const std::string& key);
  void ShutDown();

  size_t Len() const;  // keys ready to be processed

 private:
  void AddLocked(const std::string& key);
  std::chrono::milliseconds BackoffLocked(const std::string& key);
  std::chrono::milliseconds BucketDelayLocked();

  const WorkQueueOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  std::set<std::string> queued_;      // in queue_
  std::set<std::string> processing_;  // handed out, not Done
  std::set<std::string> dirty_;       // added while processing
  std::multimap<Clock::time_point, std::string> delayed_;
  std::map<std::string, int> failures_;
  double tokens_;
  Clock::time_point tokens_at_;
  bool shut_down_ = false;
};

}  // namespace sidelog::op
