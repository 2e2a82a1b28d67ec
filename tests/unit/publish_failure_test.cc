// How a publish that JetStream refused (or never acknowledged) is answered.
#include <gtest/gtest.h>

#include "sidelog/jetstream.h"

namespace sidelog {
namespace {

constexpr const char* kSubject = "sidelog.shop.orders.o1";

TEST(PublishFailure, ALostRaceIsAConflictWithTheCurrentSequenceWhenTheServerSaysIt) {
  Status solo = PublishFailure(false, 10071, "wrong last sequence: 42", kSubject);
  EXPECT_EQ(solo.code(), Status::Code::kConflict);
  EXPECT_EQ(solo.context().current_version, 42);
  // Clustered streams answer 10164 while the subject's last message is still being stored.
  Status clustered = PublishFailure(false, 10164, "wrong last sequence", kSubject);
  EXPECT_EQ(clustered.code(), Status::Code::kConflict) << clustered.message();
}

TEST(PublishFailure, TransientClusterRefusalsAreRetryableAndStoredNothing) {
  for (int code : {10008, 10163, 10167}) {
    Status s = PublishFailure(false, code, "busy", kSubject);
    EXPECT_EQ(s.code(), Status::Code::kUnavailable) << code;
    EXPECT_FALSE(s.context().outcome_unknown) << code;
    EXPECT_GT(s.context().retry_after_seconds, 0) << code;
  }
  Status none = PublishFailure(true, 0, "no responders available for request", kSubject);
  EXPECT_EQ(none.code(), Status::Code::kUnavailable);
  EXPECT_FALSE(none.context().outcome_unknown);
  EXPECT_NE(none.message().find(kSubject), std::string::npos) << none.message();
}

TEST(PublishFailure, AStreamAtALimitIsFullAndStoredNothing) {
  Status full = PublishFailure(false, 10077, "maximum messages exceeded", kSubject);
  EXPECT_EQ(full.code(), Status::Code::kUnavailable);
  EXPECT_EQ(full.context().reason, "StreamFull");
  EXPECT_FALSE(full.context().outcome_unknown);
  EXPECT_GT(full.context().retry_after_seconds, 0);
  EXPECT_NE(full.message().find("maximum messages exceeded"), std::string::npos) << full.message();
}

TEST(PublishFailure, UnknownOutcomesSaySo) {
  Status in_process = PublishFailure(false, 10158, "duplicate message id is in process", kSubject);
  EXPECT_EQ(in_process.code(), Status::Code::kUnavailable);
  EXPECT_TRUE(in_process.context().outcome_unknown);
  Status timeout = PublishFailure(false, 0, "timeout", kSubject);
  EXPECT_EQ(timeout.code(), Status::Code::kUnavailable);
  EXPECT_TRUE(timeout.context().outcome_unknown);
}

TEST(PublishFailure, OversizedCommitsAndUnknownRefusals) {
  EXPECT_EQ(PublishFailure(false, 10054, "message size exceeds maximum allowed", kSubject).code(),
            Status::Code::kTooLarge);
  Status other = PublishFailure(false, 10999, "a refusal this build does not know", kSubject);
  EXPECT_EQ(other.code(), Status::Code::kInternal);
  EXPECT_NE(other.message().find("10999"), std::string::npos) << other.message();
}

}  // namespace
}  // namespace sidelog
