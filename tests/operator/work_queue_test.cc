#include "work_queue.h"

#include <gtest/gtest.h>

#include <thread>

namespace sidelog::op {
namespace {

using namespace std::chrono_literals;

TEST(WorkQueue, AKeyAddedTwiceIsHandedOutOnce) {
  WorkQueue q;
  q.Add("ns/a");
  q.Add("ns/a");
  q.Add("ns/b");
  EXPECT_EQ(q.Len(), 2u);
  std::string k;
  ASSERT_TRUE(q.Get(&k));
  EXPECT_EQ(k, "ns/a");
  ASSERT_TRUE(q.Get(&k));
  EXPECT_EQ(k, "ns/b");
  EXPECT_EQ(q.Len(), 0u);
}

TEST(WorkQueue, AKeyAddedWhileProcessingIsQueuedAgainOnlyAfterDone) {
  WorkQueue q;
  q.Add("k");
  std::string k;
  ASSERT_TRUE(q.Get(&k));
  q.Add("k");  // a change arrives while a worker reconciles k
  EXPECT_EQ(q.Len(), 0u) << "a second worker must not get k while the first holds it";
  q.Done("k");
  EXPECT_EQ(q.Len(), 1u);
  ASSERT_TRUE(q.Get(&k));
  EXPECT_EQ(k, "k");
}

TEST(WorkQueue, AddAfterHandsTheKeyOutOnlyWhenDue) {
  WorkQueue q;
  auto start = std::chrono::steady_clock::now();
  q.AddAfter("later", 150ms);
  EXPECT_EQ(q.Len(), 0u);
  std::string k;
  ASSERT_TRUE(q.Get(&k));
  EXPECT_EQ(k, "later");
  EXPECT_GE(std::chrono::steady_clock::now() - start, 140ms);
}

TEST(WorkQueue, RateLimitedBackoffDoublesPerFailureAndForgetResetsIt) {
  WorkQueueOptions o;
  o.base_delay = 20ms;
  o.max_delay = 1000ms;
  WorkQueue q(o);
  std::string k;
  std::vector<std::chrono::milliseconds> waits;
  for (int i = 0; i < 3; ++i) {
    auto start = std::chrono::steady_clock::now();
    q.AddRateLimited("k");
    ASSERT_TRUE(q.Get(&k));
    q.Done(k);
    waits.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start));
  }
  EXPECT_GE(waits[0], 18ms);
  EXPECT_GE(waits[1], 38ms);
  EXPECT_GE(waits[2], 78ms);
  EXPECT_EQ(q.Failures("k"), 3);
  q.Forget("k");
  EXPECT_EQ(q.Failures("k"), 0);
}

TEST(WorkQueue, TheGlobalBucketSpacesRateLimitedAddsBeyondTheBurst) {
  WorkQueueOptions o;
  o.base_delay = 1ms;
  o.qps = 20;  // one token every 50 ms
  o.burst = 2;
  WorkQueue q(o);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) q.AddRateLimited("k" + std::to_string(i));
  std::string k;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(q.Get(&k));
    q.Done(k);
  }
  // Two from the burst, then two more at 50 ms spacing.
  EXPECT_GE(std::chrono::steady_clock::now() - start, 95ms);
}

TEST(WorkQueue, ShutDownWakesAWaitingWorker) {
  WorkQueue q;
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    q.ShutDown();
  });
  std::string k;
  EXPECT_FALSE(q.Get(&k));
  t.join();
}

}  // namespace
}  // namespace sidelog::op
