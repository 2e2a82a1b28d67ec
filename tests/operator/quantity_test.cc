#include "quantity.h"

#include <gtest/gtest.h>

namespace sidelog::op {
namespace {

TEST(Quantity, ParsesBinaryDecimalAndExponentSuffixesExactly) {
  EXPECT_EQ(*ParseQuantity(Json("10Gi")), 10LL * 1024 * 1024 * 1024);
  EXPECT_EQ(*ParseQuantity(Json("512Mi")), 512LL * 1024 * 1024);
  EXPECT_EQ(*ParseQuantity(Json("1.5Ki")), 1536);
  EXPECT_EQ(*ParseQuantity(Json("1.1k")), 1100);
  EXPECT_EQ(*ParseQuantity(Json("2M")), 2000000);
  EXPECT_EQ(*ParseQuantity(Json("1e9")), 1000000000);
  EXPECT_EQ(*ParseQuantity(Json("12345")), 12345);
  EXPECT_EQ(*ParseQuantity(Json(4096)), 4096);
}

TEST(Quantity, RoundsFractionsUpAsKubernetesDoes) {
  EXPECT_EQ(*ParseQuantity(Json("1500m")), 2);
  EXPECT_EQ(*ParseQuantity(Json("0.1")), 1);
}

TEST(Quantity, RefusesWhatIsNotAQuantity) {
  for (const char* bad : {"", "Gi", "10 Gi", "10GB", "1.2.3", "ten"}) {
    auto q = ParseQuantity(Json(bad));
    EXPECT_FALSE(q.ok()) << bad;
    if (!q.ok()) {
      EXPECT_EQ(q.status().code(), Status::Code::kInvalid);
    }
  }
  EXPECT_FALSE(ParseQuantity(Json("100Ei")).ok()) << "does not fit in 63 bits";
  EXPECT_FALSE(ParseQuantity(Json::array()).ok());
}

}  // namespace
}  // namespace sidelog::op
