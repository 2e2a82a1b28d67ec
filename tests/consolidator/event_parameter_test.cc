// Handler parameters: which names are allowed, and how an event's JSON binds to SQL values.
#include "event_parameter.h"

#include <gtest/gtest.h>

#include <limits>

namespace sidelog::consolidator {
namespace {

StoredEvent Sample() {
  StoredEvent e;
  e.id = "ev-1";
  e.stream = "orders";
  e.entity = "order-7";
  e.type = "ItemAdded";
  e.version = 3;
  e.position = 42;
  e.index = 1;
  e.time = 1795687200123456;  // 2026-11-26T10:00:00.123456Z
  e.metadata = {{"correlationid", "c-1"}};
  e.data = Json::parse(R"({"item": {"sku": "a-1", "price": 12.5, "qty": 2, "gift": true,
                           "tags": ["x", "y"], "note": null}, "items": [{"sku": "b"}],
                           "big": 18446744073709551615})");
  return e;
}

SqlValue Bind(const std::string& name) {
  auto p = EventParameter::Parse(name);
  EXPECT_TRUE(p.ok()) << p.status().message();
  return p.ok() ? p->ValueFor(Sample()) : SqlValue{};
}

TEST(EventParameter, EnvelopeFieldsBindWithTheirTypes) {
  EXPECT_EQ(Bind("entity"), SqlValue(std::string("order-7")));
  EXPECT_EQ(Bind("type"), SqlValue(std::string("ItemAdded")));
  EXPECT_EQ(Bind("id"), SqlValue(std::string("ev-1")));
  EXPECT_EQ(Bind("stream"), SqlValue(std::string("orders")));
  EXPECT_EQ(Bind("version"), SqlValue(int64_t{3}));
  EXPECT_EQ(Bind("position"), SqlValue(int64_t{42}));
  EXPECT_EQ(Bind("time"), SqlValue(FormatTime(Sample().time)));
}

TEST(EventParameter, JsonMapsToSqlTypes) {
  EXPECT_EQ(Bind("data.item.sku"), SqlValue(std::string("a-1")));            // string -> text
  EXPECT_EQ(Bind("data.item.qty"), SqlValue(int64_t{2}));                    // integer -> integer
  EXPECT_EQ(Bind("data.item.price"), SqlValue(12.5));                        // other number -> real
  EXPECT_EQ(Bind("data.item.gift"), SqlValue(int64_t{1}));                   // boolean -> 0/1
  EXPECT_EQ(Bind("data.item.tags"), SqlValue(std::string(R"(["x","y"])")));  // array -> JSON
  EXPECT_EQ(Bind("data.items"), SqlValue(std::string(R"([{"sku":"b"}])")));
  EXPECT_EQ(SqlValueFromJson(Json::parse(R"({"b":1,"a":[true]})")),
            SqlValue(std::string(R"({"a":[true],"b":1})")));  // object -> JSON
  // An unsigned integer past int64 cannot be an INTEGER: it binds as a real.
  EXPECT_EQ(Bind("data.big"), SqlValue(static_cast<double>(std::numeric_limits<uint64_t>::max())));
}

TEST(EventParameter, MissingPathsAndNullBindNull) {
  EXPECT_EQ(Bind("data.item.note"), SqlValue());
  EXPECT_EQ(Bind("data.item.nothing"), SqlValue());
  EXPECT_EQ(Bind("data.item.sku.deeper"), SqlValue());
  EXPECT_EQ(Bind("data.items.5.sku"), SqlValue());
  EXPECT_EQ(Bind("meta.absent"), SqlValue());
}

TEST(EventParameter, DigitsIndexArrays) {
  EXPECT_EQ(Bind("data.items.0.sku"), SqlValue(std::string("b")));
  EXPECT_EQ(Bind("data.item.tags.1"), SqlValue(std::string("y")));
}

TEST(EventParameter, MetadataBindsAsText) {
  EXPECT_EQ(Bind("meta.correlationid"), SqlValue(std::string("c-1")));
}

TEST(EventParameter, WholeDataBindsAsJson) {
  StoredEvent e = Sample();
  auto p = EventParameter::Parse("data");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->ValueFor(e), SqlValue(e.data.dump()));
}

TEST(EventParameter, UnknownNamesAreRefusedWithTheAllowedForms) {
  for (const char* bad : {"customer", "meta", "meta.a.b", "data.", "entity.x", "Data.x", "index"}) {
    auto p = EventParameter::Parse(bad);
    EXPECT_FALSE(p.ok()) << bad;
    if (!p.ok()) {
      EXPECT_NE(p.status().message().find(":data.<path>"), std::string::npos);
    }
  }
}

TEST(SqlValue, TextFormKeepsEveryDouble) {
  EXPECT_EQ(SqlValueText(SqlValue(0.1)), "0.1");
  EXPECT_EQ(SqlValueText(SqlValue(int64_t{-5})), "-5");
  EXPECT_EQ(std::stod(SqlValueText(SqlValue(1.0 / 3))), 1.0 / 3);
}

}  // namespace
}  // namespace sidelog::consolidator
