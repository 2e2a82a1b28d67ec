#include "sidelog/uri.h"

#include <gtest/gtest.h>

namespace sidelog {
namespace {

TEST(PercentDecode, DecodesEscapesOfEitherCase) {
  EXPECT_EQ(PercentDecode("a%2Fb%2fc"), "a/b/c");
  EXPECT_EQ(PercentDecode("%E2%82%AC"), "\xE2\x82\xAC");
  EXPECT_EQ(PercentDecode("plain"), "plain");
  EXPECT_EQ(PercentDecode(""), "");
}

TEST(PercentDecode, RefusesAnEscapeWithoutTwoHexDigits) {
  EXPECT_FALSE(PercentDecode("strong%"));
  EXPECT_FALSE(PercentDecode("a%2"));
  EXPECT_FALSE(PercentDecode("a%zz"));
  EXPECT_FALSE(PercentDecode("%g0"));
}

TEST(DecodeQuery, SplitsPairsAndDecodesKeysAndValues) {
  auto q = DecodeQuery("at=2026-01-01T00%3A00%3A00Z&types=A%2CB&&flag&x=1&x=2");
  ASSERT_TRUE(q);
  EXPECT_EQ((*q)["at"], "2026-01-01T00:00:00Z");
  EXPECT_EQ((*q)["types"], "A,B");
  EXPECT_EQ((*q)["flag"], "") << "a key without '=' has an empty value";
  EXPECT_EQ((*q)["x"], "2") << "the last of repeated keys wins";
  EXPECT_EQ(q->size(), 4u);
  EXPECT_TRUE(DecodeQuery("")->empty());
}

TEST(DecodeQuery, RefusesAQueryWithABadEscape) {
  EXPECT_FALSE(DecodeQuery("consistency=strong%"));
  EXPECT_FALSE(DecodeQuery("a%zz=1"));
}

}  // namespace
}  // namespace sidelog
