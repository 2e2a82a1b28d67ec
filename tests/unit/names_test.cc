#include "sidelog/names.h"

#include <gtest/gtest.h>

namespace sidelog {
namespace {

TEST(StreamName, AcceptsDns1123Labels) {
  EXPECT_TRUE(ValidateStreamName("orders").ok());
  EXPECT_TRUE(ValidateStreamName("a").ok());
  EXPECT_TRUE(ValidateStreamName("order-lines-2").ok());
  EXPECT_TRUE(ValidateStreamName(std::string(63, 'a')).ok());
}

TEST(StreamName, RejectsOtherNamesNamingTheRule) {
  EXPECT_EQ(ValidateStreamName("").context().rule, "streamName.length");
  EXPECT_EQ(ValidateStreamName(std::string(64, 'a')).context().rule, "streamName.length");
  EXPECT_EQ(ValidateStreamName("Orders").context().rule, "streamName.charset");
  EXPECT_EQ(ValidateStreamName("or_ders").context().rule, "streamName.charset");
  EXPECT_EQ(ValidateStreamName("-orders").context().rule, "streamName.edges");
  EXPECT_EQ(ValidateStreamName("orders-").context().rule, "streamName.edges");
  EXPECT_NE(ValidateStreamName("Orders").message().find("lowercase"), std::string::npos);
}

TEST(EntityId, AcceptsPrintableAsciiUpTo200Bytes) {
  EXPECT_TRUE(ValidateEntityId("order-42").ok());
  EXPECT_TRUE(ValidateEntityId("a.b:c@d%e").ok());
  EXPECT_TRUE(ValidateEntityId(std::string(200, 'x')).ok());
}

TEST(EntityId, RejectsWhitespaceReservedCharactersAndLength) {
  EXPECT_EQ(ValidateEntityId("").context().rule, "entityId.length");
  EXPECT_EQ(ValidateEntityId(std::string(201, 'x')).context().rule, "entityId.length");
  EXPECT_EQ(ValidateEntityId("a b").context().rule, "entityId.charset");
  EXPECT_EQ(ValidateEntityId("a\tb").context().rule, "entityId.charset");
  EXPECT_EQ(ValidateEntityId("caf\xc3\xa9").context().rule, "entityId.charset");
  EXPECT_EQ(ValidateEntityId("a/b").context().rule, "entityId.reserved");
  EXPECT_EQ(ValidateEntityId("a*").context().rule, "entityId.reserved");
  EXPECT_EQ(ValidateEntityId("a>").context().rule, "entityId.reserved");
  EXPECT_NE(ValidateEntityId("a/b").message().find("'/'"), std::string::npos);
}

TEST(EventType, FollowsThePattern) {
  EXPECT_TRUE(ValidateEventType("OrderPaid").ok());
  EXPECT_TRUE(ValidateEventType("order.paid_v2-x").ok());
  EXPECT_TRUE(ValidateEventType("A" + std::string(127, 'b')).ok());
  EXPECT_EQ(ValidateEventType("").context().rule, "eventType.length");
  EXPECT_EQ(ValidateEventType("A" + std::string(128, 'b')).context().rule, "eventType.length");
  EXPECT_EQ(ValidateEventType("1Order").context().rule, "eventType.start");
  EXPECT_EQ(ValidateEventType("Order Paid").context().rule, "eventType.charset");
}

TEST(Metadata, KeysAreCloudEventsExtensionNames) {
  EXPECT_TRUE(ValidateMetadataKey("correlationid").ok());
  EXPECT_TRUE(ValidateMetadataKey("traceparent").ok());
  EXPECT_EQ(ValidateMetadataKey("Trace").context().rule, "metadata.keyCharset");
  EXPECT_EQ(ValidateMetadataKey("trace-id").context().rule, "metadata.keyCharset");
  EXPECT_EQ(ValidateMetadataKey(std::string(21, 'a')).context().rule, "metadata.keyLength");
  EXPECT_EQ(ValidateMetadataKey("type").context().rule, "metadata.reserved");
  EXPECT_EQ(ValidateMetadataKey("sidelogversion").context().rule, "metadata.reserved");
  EXPECT_EQ(ValidateMetadataValue("k", std::string(4097, 'v')).context().rule,
            "metadata.valueLength");
}

TEST(SubjectToken, EncodesEverythingOutsideTheSafeSetAsUppercaseHex) {
  EXPECT_EQ(EncodeSubjectToken("order-42_x"), "order-42_x");
  EXPECT_EQ(EncodeSubjectToken("a.b"), "a%2Eb");
  EXPECT_EQ(EncodeSubjectToken("50%"), "50%25");
  EXPECT_EQ(EncodeSubjectToken("k:v@z"), "k%3Av%40z");
  std::string decoded;
  ASSERT_TRUE(DecodeSubjectToken("k%3Av%40z", &decoded));
  EXPECT_EQ(decoded, "k:v@z");
  EXPECT_FALSE(DecodeSubjectToken("bad%2", &decoded));
  EXPECT_FALSE(DecodeSubjectToken("bad%zz", &decoded));
  EXPECT_FALSE(DecodeSubjectToken("a.b", &decoded));
}

TEST(SubjectToken, RoundTripsEveryPrintableByte) {
  std::string all;
  for (char c = 0x21; c < 0x7f; ++c) all += c;
  std::string decoded;
  ASSERT_TRUE(DecodeSubjectToken(EncodeSubjectToken(all), &decoded));
  EXPECT_EQ(decoded, all);
}

TEST(Subjects, FollowTheNamingTable) {
  EXPECT_EQ(JetStreamName("shop", "orders"), "SIDELOG_shop_orders");
  EXPECT_EQ(EntitySubject("shop", "orders", "order.42"), "sidelog.shop.orders.order%2E42");
}

}  // namespace
}  // namespace sidelog

namespace sidelog {
namespace {

TEST(Utf8, AcceptsWellFormedAndRejectsMalformed) {
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  size_t at = 0;
  EXPECT_FALSE(IsValidUtf8("ab\xff", &at));
  EXPECT_EQ(at, 2u);
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));          // truncated at the end
}

}  // namespace
}  // namespace sidelog
