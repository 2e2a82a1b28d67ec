// Named queries on SQLite: parameters are bound values, read-only is the database's rule, and
// bad queries are refused at start with file:line.
#include "queries.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "projection.h"

namespace sidelog::consolidator {
namespace {

class QueriesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sidelog-queries.XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Opens the projection (creating the tables, with two rows) and the queries.
  Status Open(const std::string& queries_yaml) {
    std::string yaml =
        "name: t\nsidecar: {url: http://127.0.0.1:1}\n"
        "sources: [{stream: orders}]\n"
        "target: {sqlite: {path: " +
        dir_ +
        "/view.db}}\n"
        "schema: CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, n INTEGER,"
        " price REAL, note TEXT)\n"
        "handlers:\n"
        "  - event: orders/Created\n"
        "    sql: INSERT INTO orders VALUES (:entity, :version, :data.price, :data.note)\n"
        "queries:\n" +
        queries_yaml;
    auto c = ParseConsolidatorConfig(yaml, "cons.yaml");
    if (!c.ok()) return c.status();
    config_ = std::make_unique<ConsolidatorConfig>(std::move(c).value());
    target_ = Target::FromConfig(*config_);
    auto p = Projection::Open(*config_, [this] { return target_->OpenWriter(Slot::kLive); });
    if (!p.ok()) return p.status();
    StoredEvent a, b;
    a.stream = b.stream = "orders";
    a.type = b.type = "Created";
    a.entity = "o1";
    a.version = 1;
    a.data = {{"price", 2.5}, {"note", "first"}};
    b.entity = "42";
    b.version = 2;
    b.data = {{"price", 10}, {"note", nullptr}};
    a.position = 1;
    b.position = 2;
    auto r = (*p)->Apply({"orders", {a, b}, Cursor{2, -1}}, {});
    if (!r.error.ok()) return r.error;
    queries_ = std::make_unique<Queries>(*config_, target_.get());
    return queries_->Check();
  }

  std::string dir_;
  std::unique_ptr<ConsolidatorConfig> config_;
  std::unique_ptr<Target> target_;
  std::unique_ptr<Queries> queries_;
};

TEST_F(QueriesTest, ReturnsTypedRowsForBoundParameters) {
  ASSERT_TRUE(Open("  order: SELECT id, n, price, note FROM orders WHERE id = :id\n").ok());
  auto rows = queries_->Run("order", {{"id", "o1"}});
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  EXPECT_EQ(*rows, Json::parse(R"({"rows":[{"id":"o1","n":1,"price":2.5,"note":"first"}]})"));
  // An id that looks like a number still matches the TEXT column.
  auto numeric = queries_->Run("order", {{"id", "42"}});
  ASSERT_TRUE(numeric.ok());
  EXPECT_EQ((*numeric)["rows"][0]["note"], nullptr);
}

TEST_F(QueriesTest, AnInjectionAttemptIsJustAValue) {
  ASSERT_TRUE(Open("  order: SELECT id FROM orders WHERE id = :id\n").ok());
  for (const char* evil : {"' OR '1'='1", "o1'; DELETE FROM orders; --", "1 OR 1=1"}) {
    auto rows = queries_->Run("order", {{"id", evil}});
    ASSERT_TRUE(rows.ok()) << rows.status().message();
    EXPECT_TRUE((*rows)["rows"].empty()) << evil;
  }
  EXPECT_EQ((*queries_->Run("order", {{"id", "o1"}}))["rows"].size(), 1u);
}

TEST_F(QueriesTest, UnknownQueriesAndParametersAreRequestErrors) {
  ASSERT_TRUE(Open("  order: SELECT id FROM orders WHERE id = :id\n").ok());
  EXPECT_EQ(queries_->Run("nope", {}).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(queries_->Run("order", {}).status().code(), Status::Code::kInvalid);
  EXPECT_EQ(queries_->Run("order", {{"id", "o1"}, {"extra", "1"}}).status().code(),
            Status::Code::kInvalid);
}

TEST_F(QueriesTest, AQueryThatWritesIsRefusedAtStart) {
  Status st = Open("  wipe: DELETE FROM orders WHERE id = :id\n");
  EXPECT_EQ(st.code(), Status::Code::kInvalid);
  EXPECT_EQ(st.message().rfind("cons.yaml:10: queries.wipe: the query does not prepare", 0), 0u)
      << st.message();
  EXPECT_NE(st.message().find("only read"), std::string::npos) << st.message();
}

TEST_F(QueriesTest, TheReaderConnectionIsReadOnlyInTheDatabase) {
  ASSERT_TRUE(Open("  order: SELECT id FROM orders WHERE id = :id\n").ok());
  auto db = target_->OpenReader();
  ASSERT_TRUE(db.ok());
  Status st = (*db)->ExecScript("DELETE FROM orders");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("readonly"), std::string::npos) << st.message();
}

TEST_F(QueriesTest, TooManyRowsIsTooLarge) {
  ASSERT_TRUE(Open("  all: SELECT id FROM orders\n").ok());
  EXPECT_EQ(queries_->Run("all", {}, 1).status().code(), Status::Code::kTooLarge);
}

}  // namespace
}  // namespace sidelog::consolidator
