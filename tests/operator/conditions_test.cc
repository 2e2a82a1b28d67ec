#include "conditions.h"

#include <gtest/gtest.h>

namespace sidelog::op {
namespace {

TEST(Conditions, SettingANewConditionAddsItWithATransitionTime) {
  Json conditions;
  EXPECT_TRUE(SetCondition(&conditions, {"Ready", "True", "Created", "made it", 3}));
  ASSERT_EQ(conditions.size(), 1u);
  EXPECT_EQ(conditions[0]["reason"], "Created");
  EXPECT_EQ(conditions[0]["observedGeneration"], 3);
  EXPECT_FALSE(conditions[0]["lastTransitionTime"].get<std::string>().empty());
}

TEST(Conditions, TheTransitionTimeChangesOnlyWithTheStatus) {
  Json conditions = Json::array();
  conditions.push_back({{"type", "Ready"},
                        {"status", "True"},
                        {"reason", "Created"},
                        {"message", "m"},
                        {"observedGeneration", 1},
                        {"lastTransitionTime", "2020-01-01T00:00:00Z"}});
  EXPECT_TRUE(SetCondition(&conditions, {"Ready", "True", "Updated", "changed", 2}));
  EXPECT_EQ(conditions[0]["lastTransitionTime"], "2020-01-01T00:00:00Z");
  EXPECT_EQ(conditions[0]["reason"], "Updated");
  EXPECT_FALSE(SetCondition(&conditions, {"Ready", "True", "Updated", "changed", 2}))
      << "an identical condition is no change";
  EXPECT_TRUE(SetCondition(&conditions, {"Ready", "False", "NatsUnavailable", "down", 2}));
  EXPECT_NE(conditions[0]["lastTransitionTime"], "2020-01-01T00:00:00Z");
  EXPECT_EQ(conditions.size(), 1u);
}

TEST(Conditions, OtherTypesAreLeftAlone) {
  Json conditions = Json::array();
  SetCondition(&conditions, {"Ready", "True", "Created", "", 1});
  SetCondition(&conditions, {"Rebuilding", "False", "Idle", "", 1});
  ASSERT_EQ(conditions.size(), 2u);
  ASSERT_NE(FindCondition(conditions, "Rebuilding"), nullptr);
  EXPECT_EQ((*FindCondition(conditions, "Ready"))["reason"], "Created");
  EXPECT_EQ(FindCondition(conditions, "Missing"), nullptr);
}

}  // namespace
}  // namespace sidelog::op
