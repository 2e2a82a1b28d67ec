#include "sidelog/fold.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace sidelog {
namespace {

using sidelog::testing::MustCompile;
using Mode = Rules::Mode;

EntityState FoldAll(const Rules& rules, const std::vector<std::pair<std::string, Json>>& events) {
  EntityState s = rules.Initial();
  for (const auto& [type, data] : events) {
    auto st = rules.Apply(&s, type, data, Mode::kAppend);
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  return s;
}

TEST(Reducers, UnlistedTypesMergeTheirDataRfc7386) {
  auto rules = Rules::Default();
  auto s = FoldAll(*rules, {{"A", {{"name", "x"}, {"address", {{"city", "Oslo"}}}}},
                            {"B", {{"address", {{"city", nullptr}, {"zip", "0150"}}}}}});
  EXPECT_EQ(s.state, Json::parse(R"({"name":"x","address":{"zip":"0150"}})"));
}

TEST(Reducers, MergeOfNonObjectDataIsRejectedAtAppendAndSkippedOnReplay) {
  auto rules = Rules::Default();
  EntityState s = rules->Initial();
  auto st = rules->Apply(&s, "A", Json(5), Mode::kAppend);
  EXPECT_EQ(st.code(), Status::Code::kRejected);
  EXPECT_NE(st.message().find("needs an object"), std::string::npos);
  EXPECT_TRUE(rules->Apply(&s, "A", Json(5), Mode::kReplay).ok());
  EXPECT_EQ(s.state, Json::object());
}

TEST(Reducers, SetFromDataAndFromValueCreatingParents) {
  auto rules = MustCompile(R"({"reducers":{
      "Placed":[{"op":"set","path":"/placed","value":true},
                {"op":"set","path":"/customer/id","from":"/customerId"}]}})");
  auto s = FoldAll(*rules, {{"Placed", {{"customerId", "c-7"}}}});
  EXPECT_EQ(s.state, Json::parse(R"({"placed":true,"customer":{"id":"c-7"}})"));
}

TEST(Reducers, SetThroughAScalarIsRejected) {
  auto rules = MustCompile(R"({"reducers":{"A":[{"op":"set","path":"/x/y","value":1}]}})");
  EntityState s = rules->Initial();
  s.state = {{"x", 5}};
  auto st = rules->Apply(&s, "A", Json::object(), Mode::kAppend);
  EXPECT_EQ(st.code(), Status::Code::kRejected);
  EXPECT_NE(st.message().find("/x is a number"), std::string::npos) << st.message();
}

TEST(Reducers, UnsetRemovesAndToleratesMissingPaths) {
  auto rules = MustCompile(R"({"reducers":{"Cleared":[{"op":"unset","path":"/address"},
                                                      {"op":"unset","path":"/nope/deeper"}]}})");
  EntityState s = rules->Initial();
  s.state = {{"address", "x"}, {"name", "n"}};
  ASSERT_TRUE(rules->Apply(&s, "Cleared", Json::object(), Mode::kAppend).ok());
  EXPECT_EQ(s.state, Json::parse(R"({"name":"n"})"));
}

TEST(Reducers, IncrementAddsNumbersStartingFromZero) {
  auto rules = MustCompile(R"({"reducers":{
      "Paid":[{"op":"increment","path":"/paid","from":"/amount"}],
      "Visit":[{"op":"increment","path":"/visits"}]}})");
  auto s = FoldAll(*rules, {{"Paid", {{"amount", 10}}},
                            {"Paid", {{"amount", 2}}},
                            {"Visit", Json::object()},
                            {"Visit", Json::object()}});
  EXPECT_EQ(s.state["paid"], 12);
  EXPECT_TRUE(s.state["paid"].is_number_integer());
  EXPECT_EQ(s.state["visits"], 2);
  ASSERT_TRUE(rules->Apply(&s, "Paid", {{"amount", 0.5}}, Mode::kAppend).ok());
  EXPECT_DOUBLE_EQ(s.state["paid"].get<double>(), 12.5);
}

TEST(Reducers, IncrementOfWrongTypesIsAClearRejection) {
  auto rules =
      MustCompile(R"({"reducers":{"Paid":[{"op":"increment","path":"/paid","from":"/amount"}]}})");
  EntityState s = rules->Initial();
  auto st = rules->Apply(&s, "Paid", {{"amount", "ten"}}, Mode::kAppend);
  EXPECT_EQ(st.code(), Status::Code::kRejected);
  EXPECT_NE(st.message().find("/amount is a string"), std::string::npos) << st.message();

  st = rules->Apply(&s, "Paid", Json::object(), Mode::kAppend);
  EXPECT_EQ(st.code(), Status::Code::kRejected);
  EXPECT_NE(st.message().find("event data has no /amount"), std::string::npos) << st.message();

  s.state = {{"paid", "lots"}};
  st = rules->Apply(&s, "Paid", {{"amount", 1}}, Mode::kAppend);
  EXPECT_EQ(st.code(), Status::Code::kRejected);
  EXPECT_NE(st.message().find("cannot be incremented"), std::string::npos) << st.message();
  EXPECT_EQ(st.context().rule, "reducers.Paid");
}

TEST(Reducers, AppendBuildsArraysAndRejectsNonArrays) {
  auto rules =
      MustCompile(R"({"reducers":{"ItemAdded":[{"op":"append","path":"/items","from":"/item"}]}})");
  auto s = FoldAll(*rules, {{"ItemAdded", {{"item", {{"sku", "a"}}}}},
                            {"ItemAdded", {{"item", {{"sku", "b"}}}}}});
  EXPECT_EQ(s.state["items"], Json::parse(R"([{"sku":"a"},{"sku":"b"}])"));
  s.state["items"] = "not a list";
  auto st = rules->Apply(&s, "ItemAdded", {{"item", 1}}, Mode::kAppend);
  EXPECT_EQ(st.code(), Status::Code::kRejected);
  EXPECT_NE(st.message().find("nothing can be appended"), std::string::npos);
}

TEST(Reducers, DeleteMarksTheEntityDeleted) {
  auto rules = MustCompile(R"({"reducers":{"Deleted":[{"op":"delete"}]}})");
  auto s = FoldAll(*rules, {{"Created", {{"a", 1}}}, {"Deleted", Json::object()}});
  EXPECT_TRUE(s.deleted);
}

TEST(Reducers, ReplayNeverFailsAndSkipsOpsThatNoLongerFit) {
  auto rules =
      MustCompile(R"({"reducers":{"Paid":[{"op":"increment","path":"/paid","from":"/amount"},
                                                  {"op":"set","path":"/last","from":"/amount"}]}})");
  EntityState s = rules->Initial();
  EXPECT_TRUE(rules->Apply(&s, "Paid", {{"amount", "bad"}}, Mode::kReplay).ok());
  EXPECT_EQ(s.state, Json::parse(R"({"last":"bad"})"));
}

TEST(StateMachine, EnforcesTransitionsAtAppend) {
  auto rules = MustCompile(R"({"stateMachine":{"initial":"new","strict":true,"transitions":[
      {"event":"OrderCreated","from":["new"],"to":"created"},
      {"event":"OrderPaid","from":["created"],"to":"paid"},
      {"event":"OrderCancelled","from":["created","paid"],"to":"cancelled"}]}})");
  EntityState s = rules->Initial();
  EXPECT_EQ(s.status, "new");
  auto st = rules->Apply(&s, "OrderPaid", Json::object(), Mode::kAppend);
  EXPECT_EQ(st.code(), Status::Code::kRejected);
  EXPECT_NE(st.message().find("not allowed in state \"new\""), std::string::npos);
  EXPECT_EQ(st.context().rule, "stateMachine.transitions");
  ASSERT_TRUE(rules->Apply(&s, "OrderCreated", Json::object(), Mode::kAppend).ok());
  ASSERT_TRUE(rules->Apply(&s, "OrderPaid", Json::object(), Mode::kAppend).ok());
  EXPECT_EQ(s.status, "paid");
  ASSERT_TRUE(rules->Apply(&s, "OrderCancelled", Json::object(), Mode::kAppend).ok());
  EXPECT_EQ(s.status, "cancelled");
  st = rules->Apply(&s, "CommentAdded", Json::object(), Mode::kAppend);
  EXPECT_EQ(st.code(), Status::Code::kRejected);
  EXPECT_EQ(st.context().rule, "stateMachine.strict");
}

TEST(StateMachine, NonStrictLetsUnnamedTypesPassInAnyState) {
  auto rules = MustCompile(R"({"stateMachine":{"initial":"new","strict":false,"transitions":[
      {"event":"OrderCreated","from":["new"],"to":"created"}]}})");
  EntityState s = rules->Initial();
  ASSERT_TRUE(rules->Apply(&s, "CommentAdded", Json::object(), Mode::kAppend).ok());
  EXPECT_EQ(s.status, "new");
  ASSERT_TRUE(rules->Apply(&s, "OrderCreated", Json::object(), Mode::kAppend).ok());
  // A type that has transitions is still refused from a state none of them starts from.
  EXPECT_EQ(rules->Apply(&s, "OrderCreated", Json::object(), Mode::kAppend).code(),
            Status::Code::kRejected);
}

TEST(Schemas, EnforcedPerEventType) {
  auto rules = MustCompile(R"({"schemas":{"OrderCreated":{"type":"object","required":["customerId"],
      "properties":{"customerId":{"type":"string"}}}}})");
  EXPECT_TRUE(rules->ValidateSchema("OrderCreated", {{"customerId", "c1"}}).ok());
  EXPECT_TRUE(rules->ValidateSchema("Other", Json(5)).ok());
  auto st = rules->ValidateSchema("OrderCreated", Json::object());
  EXPECT_EQ(st.code(), Status::Code::kRejected);
  EXPECT_NE(st.message().find("customerId"), std::string::npos) << st.message();
  st = rules->ValidateSchema("OrderCreated", {{"customerId", 5}});
  EXPECT_EQ(st.code(), Status::Code::kRejected);
}

TEST(Compile, BrokenRulesNameTheirField) {
  struct Case {
    const char* json;
    const char* field;
  };
  for (
      const auto& c : std::vector<Case>{
          {R"({"reducer":{}})", "/reducer"},
          {R"({"reducers":{"A":[{"op":"add","path":"/x"}]}})", "/reducers/A/0/op"},
          {R"({"reducers":{"A":[{"op":"set"}]}})", "/reducers/A/0/path"},
          {R"({"reducers":{"A":[{"op":"set","path":"x","value":1}]}})", "/reducers/A/0/path"},
          {R"({"reducers":{"A":[{"op":"set","path":"/x"}]}})", "/reducers/A/0"},
          {R"({"reducers":{"A":[{"op":"increment","path":"/x","value":"1"}]}})",
           "/reducers/A/0/value"},
          {R"({"reducers":{"A":[{"op":"delete","path":"/x"}]}})", "/reducers/A/0/path"},
          {R"({"reducers":{"9A":[]}})", "/reducers/9A"},
          {R"({"stateMachine":{"transitions":[]}})", "/stateMachine/initial"},
          {R"({"stateMachine":{"initial":"new"}})", "/stateMachine/transitions"},
          {R"({"stateMachine":{"initial":"new","transitions":[{"event":"A","to":"x"}]}})",
           "/stateMachine/transitions/0/from"},
          {R"({"stateMachine":{"initial":"new","transitions":[{"from":["new"],"to":"x"}]}})",
           "/stateMachine/transitions/0/event"},
          {R"({"stateMachine":{"initial":"new","transitions":[{"event":true,"from":["new"],"to":"x"}]}})",
           "/stateMachine/transitions/0/event"},
          {R"({"stateMachine":{"initial":"new","transitions":[{"event":"A","from":["new"],"to":"x","then":1}]}})",
           "/stateMachine/transitions/0/then"},
          {R"({"stateMachine":{"initial":"new","transitions":[{"event":"A","from":["new"],"to":"x"},{"event":"A","from":["new"],"to":"y"}]}})",
           "/stateMachine/transitions/1"},
          {R"({"schemas":{"A":5}})", "/schemas/A"},
          {R"({"schemas":{"A":{"type":"nonsense"}}})", "/schemas/A"},
      }) {
    auto r = Rules::Compile(Json::parse(c.json));
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_EQ(r.status().context().rule, c.field) << c.json << " -> " << r.status().message();
  }
}

TEST(Compile, ATransitionWithoutEventSaysWhatIsMissing) {
  auto r = Rules::Compile(Json::parse(
      R"({"stateMachine":{"initial":"new","transitions":[{"from":["new"],"to":"x"}]}})"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "/stateMachine/transitions/0/event: is required: the event type that triggers it");
}

TEST(Compile, OnIsADeprecatedAliasOfEventInTransitions) {
  auto rules = MustCompile(R"({"stateMachine":{"initial":"new","transitions":[
      {"event":"OrderCreated","from":["new"],"to":"created"},
      {"on":"OrderPaid","from":["created"],"to":"paid"}]}})");
  EntityState s = rules->Initial();
  ASSERT_TRUE(rules->Apply(&s, "OrderCreated", Json::object(), Mode::kAppend).ok());
  ASSERT_TRUE(rules->Apply(&s, "OrderPaid", Json::object(), Mode::kAppend).ok());
  EXPECT_EQ(s.status, "paid");
  ASSERT_EQ(rules->deprecations().size(), 1u);
  EXPECT_EQ(rules->deprecations()[0].field, "/stateMachine/transitions/1/on");
  EXPECT_NE(rules->deprecations()[0].message.find("write event"), std::string::npos)
      << rules->deprecations()[0].message;
  EXPECT_EQ(rules->spec()["stateMachine"]["transitions"][1],
            Json::parse(R"({"event":"OrderPaid","from":["created"],"to":"paid"})"));
}

TEST(Compile, CurrentRulesHaveNoDeprecations) {
  auto rules = MustCompile(R"({"stateMachine":{"initial":"new","transitions":[
      {"event":"OrderCreated","from":["new"],"to":"created"}]}})");
  EXPECT_TRUE(rules->deprecations().empty());
}

TEST(Compile, ATransitionWithBothOnAndEventIsRefused) {
  auto r = Rules::Compile(Json::parse(R"({"stateMachine":{"initial":"new","transitions":[
      {"event":"A","on":"A","from":["new"],"to":"x"}]}})"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalid);
  EXPECT_EQ(r.status().context().rule, "/stateMachine/transitions/0/on");
  EXPECT_NE(r.status().message().find("give only event"), std::string::npos)
      << r.status().message();
}

TEST(Compile, RulesWrittenWithOnHashAsTheSameRulesWrittenWithEvent) {
  auto with_on = MustCompile(R"({"stateMachine":{"initial":"new","transitions":[
      {"on":"A","from":["new"],"to":"x"}]}})");
  auto with_event = MustCompile(R"({"stateMachine":{"initial":"new","transitions":[
      {"event":"A","from":["new"],"to":"x"}]}})");
  EXPECT_EQ(with_on->hash(), with_event->hash());
  EXPECT_EQ(with_on->spec(), with_event->spec());
}

TEST(Compile, HashDependsOnRulesOnly) {
  auto a = MustCompile(R"({"reducers":{"A":[{"op":"delete"}]}})");
  auto b = MustCompile(R"({"reducers":{"A":[{"op":"delete"}]}})");
  auto c = MustCompile(R"({"reducers":{"B":[{"op":"delete"}]}})");
  EXPECT_EQ(a->hash(), b->hash());
  EXPECT_NE(a->hash(), c->hash());
}

}  // namespace
}  // namespace sidelog
