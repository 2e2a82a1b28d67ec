// The EventStream spec → JetStream mapping, and that JetStream gives back exactly what the
// reconciler asked for (else every resync would "repair" a stream that is fine). Against a
// real nats-server (NATS_SERVER picks the binary).
#include <gtest/gtest.h>

#include "eventstream_reconciler.h"
#include "nats_server.h"

namespace sidelog::op {
namespace {

constexpr int64_t kSecond = 1000LL * 1000 * 1000;

TEST(EventStreamSpec, AnEmptySpecIsAnUnlimitedFileStreamThatRefusesNothingOld) {
  auto c = DesiredJetStream("shop", "orders", Json::object());
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->name, "SIDELOG_shop_orders");
  EXPECT_EQ(c->subjects, std::vector<std::string>{"sidelog.shop.orders.>"});
  EXPECT_EQ(c->max_age_ns, 0);
  EXPECT_EQ(c->max_bytes, -1);
  EXPECT_EQ(c->max_msgs, -1);
  EXPECT_TRUE(c->discard_new);
  EXPECT_EQ(c->replicas, 1);
  EXPECT_FALSE(c->memory_storage);
  EXPECT_EQ(c->duplicate_window_ns, 120 * kSecond);
}

TEST(EventStreamSpec, MapsRetentionReplicasStorageAndDuplicateWindow) {
  Json spec = {
      {"retention",
       {{"maxAge", "720h"}, {"maxBytes", "1Gi"}, {"maxCommits", 1000}, {"discard", "Old"}}},
      {"replicas", 3},
      {"storage", "memory"},
      {"duplicateWindow", "5m"}};
  auto c = DesiredJetStream("ns", "s", spec);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->max_age_ns, 720 * 3600 * kSecond);
  EXPECT_EQ(c->max_bytes, 1LL << 30);
  EXPECT_EQ(c->max_msgs, 1000);
  EXPECT_FALSE(c->discard_new);
  EXPECT_EQ(c->replicas, 3);
  EXPECT_TRUE(c->memory_storage);
  EXPECT_EQ(c->duplicate_window_ns, 300 * kSecond);
}

TEST(EventStreamSpec, TheDefaultDuplicateWindowNeverExceedsMaxAge) {
  auto c = DesiredJetStream("ns", "s", {{"retention", {{"maxAge", "30s"}}}});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->duplicate_window_ns, 30 * kSecond);
}

TEST(EventStreamSpec, RefusesValuesItCannotMapNamingTheField) {
  auto long_window =
      DesiredJetStream("ns", "s", {{"retention", {{"maxAge", "1m"}}}, {"duplicateWindow", "2m"}});
  ASSERT_FALSE(long_window.ok());
  EXPECT_NE(long_window.status().message().find("spec.duplicateWindow"), std::string::npos);
  auto bad_age = DesiredJetStream("ns", "s", {{"retention", {{"maxAge", "a week"}}}});
  ASSERT_FALSE(bad_age.ok());
  EXPECT_NE(bad_age.status().message().find("spec.retention.maxAge"), std::string::npos);
  auto bad_bytes = DesiredJetStream("ns", "s", {{"retention", {{"maxBytes", "lots"}}}});
  ASSERT_FALSE(bad_bytes.ok());
  EXPECT_NE(bad_bytes.status().message().find("spec.retention.maxBytes"), std::string::npos);
}

class EventStreamJetStream : public ::testing::Test {
 protected:
  void SetUp() override {
    nats_.Start();
    NatsConfig c;
    c.url = nats_.url();
    auto js = JetStream::Connect(c, nullptr);
    ASSERT_TRUE(js.ok()) << js.status().message();
    js_ = std::move(*js);
    for (int i = 0; i < 100 && !js_->connected(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_TRUE(js_->connected());
  }
  testing::NatsServer nats_;
  std::unique_ptr<JetStream> js_;
};

TEST_F(EventStreamJetStream, JetStreamReportsBackExactlyTheConfigThatWasCreated) {
  for (const Json& spec :
       {Json::object(),
        Json{{"retention", {{"maxAge", "24h"}, {"maxBytes", "10Mi"}, {"maxCommits", 50}}},
             {"duplicateWindow", "1m"}},
        Json{{"retention", {{"discard", "Old"}, {"maxCommits", 7}}}, {"storage", "memory"}}}) {
    static int n = 0;
    auto want = DesiredJetStream("it", "s" + std::to_string(n++), spec);
    ASSERT_TRUE(want.ok());
    ASSERT_TRUE(js_->CreateStream(*want).ok()) << spec.dump();
    auto info = js_->Info(want->name);
    ASSERT_TRUE(info.ok()) << info.status().message();
    EXPECT_TRUE(info->config == *want) << "spec " << spec.dump() << " came back different";
  }
}

TEST_F(EventStreamJetStream, UpdatesLimitsInPlaceAndRefusesAStorageChange) {
  auto want = DesiredJetStream("it", "orders", {{"retention", {{"maxAge", "720h"}}}});
  ASSERT_TRUE(js_->CreateStream(*want).ok());
  auto changed =
      DesiredJetStream("it", "orders", {{"retention", {{"maxAge", "24h"}, {"maxCommits", 100}}}});
  ASSERT_TRUE(js_->UpdateStream(*changed).ok());
  auto info = js_->Info(want->name);
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->config == *changed);

  auto memory = *changed;
  memory.memory_storage = true;
  Status s = js_->UpdateStream(memory);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kInvalid) << s.message();
}

TEST_F(EventStreamJetStream, MoreReplicasThanServersIsRefusedAsInvalidNotUnavailable) {
  auto want = DesiredJetStream("it", "wide", {{"replicas", 3}});
  Status s = js_->CreateStream(*want);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kInvalid) << s.message();
}

TEST_F(EventStreamJetStream, AMissingStreamIsNotFoundAndAnOutageIsUnavailable) {
  auto info = js_->Info("SIDELOG_it_missing");
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), Status::Code::kNotFound);
  nats_.Kill(SIGKILL);
  for (int i = 0; i < 100 && js_->connected(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  info = js_->Info("SIDELOG_it_missing");
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), Status::Code::kUnavailable)
      << "an outage must never read as a deleted stream";
}

}  // namespace
}  // namespace sidelog::op
