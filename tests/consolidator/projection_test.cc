// Projection against a real SQLite file: batches commit with their checkpoint, handler errors
// stop or dead-letter at the right event, and SQL is checked against the database at start.
#include "projection.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "sqlite_db.h"
#include "target.h"

namespace sidelog::consolidator {
namespace {

class ProjectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sidelog-proj.XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Yaml(const std::string& on_error = "stop", const std::string& extra_handler = "") {
    return "name: t\nsidecar: {url: http://127.0.0.1:1}\n"
           "sources: [{stream: orders}]\n"
           "target: {sqlite: {path: " +
           dir_ +
           "/view.db}}\n"
           "onError: " +
           on_error +
           "\n"
           "schema: |\n"
           "  CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total INTEGER NOT NULL\n"
           "    CHECK (total < 1000));\n"
           "handlers:\n"
           "  - event: orders/Created\n"
           "    sql: INSERT INTO orders (id, total) VALUES (:entity, 0)\n"
           "  - event: orders/Added\n"
           "    sql: |\n"
           "      UPDATE orders SET total = total + :data.amount WHERE id = :entity;\n" +
           extra_handler;
  }

  std::unique_ptr<Projection> Open(const std::string& yaml, Status* error = nullptr) {
    auto c = ParseConsolidatorConfig(yaml, "cons.yaml");
    EXPECT_TRUE(c.ok()) << c.status().message();
    if (!c.ok()) return nullptr;
    config_ = std::make_unique<ConsolidatorConfig>(std::move(c).value());
    target_ = Target::FromConfig(*config_);
    auto p = Projection::Open(*config_, [this] { return target_->OpenWriter(Slot::kLive); });
    if (error) *error = p.status();
    if (!error) {
      EXPECT_TRUE(p.ok()) << p.status().message();
    }
    return p.ok() ? std::move(p).value() : nullptr;
  }

  // Rows of `sql` in the live file, through a read-only connection.
  Json Rows(const std::string& sql) {
    auto db = OpenSqlite(dir_ + "/view.db", Access::kReadOnly);
    EXPECT_TRUE(db.ok());
    auto stmt = (*db)->Prepare(sql, 0);
    EXPECT_TRUE(stmt.ok()) << stmt.status().message();
    auto rows = (*stmt)->Query({}, 1000);
    EXPECT_TRUE(rows.ok());
    return *rows;
  }

  static StoredEvent Event(int64_t position, int32_t index, const std::string& type,
                           const std::string& entity, Json data = Json::object()) {
    StoredEvent e;
    e.id = "e" + std::to_string(position) + "." + std::to_string(index);
    e.stream = "orders";
    e.entity = entity;
    e.type = type;
    e.data = std::move(data);
    e.version = 1;
    e.position = position;
    e.index = index;
    e.time = 1'700'000'000'000'000;
    return e;
  }

  std::string dir_;
  std::unique_ptr<ConsolidatorConfig> config_;
  std::unique_ptr<Target> target_;
};

TEST_F(ProjectionTest, ABatchCommitsWithItsCheckpoint) {
  auto p = Open(Yaml());
  ASSERT_TRUE(p);
  Batch b{"orders",
          {Event(1, 0, "Created", "o1"), Event(1, 1, "Added", "o1", {{"amount", 5}}),
           Event(2, 0, "Added", "o1", {{"amount", 7}})},
          Cursor{2, -1}};
  ApplyResult r = p->Apply(b, Checkpoint{});
  ASSERT_TRUE(r.error.ok()) << r.error.message();
  EXPECT_EQ(r.handled, 3);
  EXPECT_EQ(Rows("SELECT id, total FROM orders"), Json::parse(R"([{"id":"o1","total":12}])"));
  auto cp = p->LoadCheckpoint("orders");
  ASSERT_TRUE(cp.ok());
  EXPECT_EQ(cp->cursor, (Cursor{2, -1}));
  EXPECT_EQ(cp->events, 3);
  EXPECT_EQ(Rows("SELECT source, position, \"index\", events FROM sidelog_checkpoints"),
            Json::parse(R"([{"source":"orders","position":2,"index":-1,"events":3}])"));
}

TEST_F(ProjectionTest, EventsWithoutAHandlerAdvanceTheCheckpoint) {
  auto p = Open(Yaml());
  ASSERT_TRUE(p);
  ApplyResult r = p->Apply({"orders", {Event(4, 0, "Unknown", "o9")}, Cursor{4, 0}}, {});
  ASSERT_TRUE(r.error.ok());
  EXPECT_EQ(r.skipped, 1);
  EXPECT_EQ(p->LoadCheckpoint("orders")->cursor, (Cursor{4, 0}));
}

TEST_F(ProjectionTest, StopKeepsTheEventsBeforeTheFailingOneAndNamesIt) {
  auto p = Open(Yaml("stop"));
  ASSERT_TRUE(p);
  Batch b{"orders",
          {Event(1, 0, "Created", "o1"), Event(2, 0, "Added", "o1", {{"amount", 5}}),
           Event(3, 0, "Added", "o1", {{"amount", 5000}}),  // breaks CHECK (total < 1000)
           Event(3, 1, "Added", "o1", {{"amount", 1}})},
          Cursor{3, -1}};
  ApplyResult r = p->Apply(b, Checkpoint{});
  ASSERT_EQ(r.error.code(), Status::Code::kRejected) << r.error.message();
  ASSERT_TRUE(r.failed_event.has_value());
  EXPECT_EQ(r.failed_event->id, "e3.0");
  EXPECT_NE(r.error.message().find("event e3.0"), std::string::npos) << r.error.message();
  EXPECT_NE(r.error.message().find("position 3.0"), std::string::npos) << r.error.message();
  EXPECT_NE(r.error.message().find("CHECK constraint failed"), std::string::npos)
      << r.error.message();
  EXPECT_EQ(r.error.context().rule, "handlers[1].sql");
  // Committed up to the event before, inside commit 3's predecessor: nothing of commit 3.
  EXPECT_EQ(r.checkpoint.cursor, (Cursor{2, 0}));
  EXPECT_EQ(p->LoadCheckpoint("orders")->cursor, (Cursor{2, 0}));
  EXPECT_EQ(Rows("SELECT total FROM orders"), Json::parse(R"([{"total":5}])"));
}

TEST_F(ProjectionTest, SkipDeadLettersTheFailingEventAndGoesOn) {
  auto p = Open(Yaml("skip"));
  ASSERT_TRUE(p);
  Batch b{"orders",
          {Event(1, 0, "Created", "o1"), Event(2, 0, "Added", "o1", {{"amount", 5000}}),
           Event(2, 1, "Added", "o1", {{"amount", 3}})},
          Cursor{2, -1}};
  ApplyResult r = p->Apply(b, Checkpoint{});
  ASSERT_TRUE(r.error.ok()) << r.error.message();
  EXPECT_EQ(r.dead_lettered, 1);
  EXPECT_EQ(r.handled, 2);
  EXPECT_EQ(r.checkpoint.cursor, (Cursor{2, -1}));
  EXPECT_EQ(r.checkpoint.events, 3);
  EXPECT_EQ(Rows("SELECT total FROM orders"), Json::parse(R"([{"total":3}])"));
  Json dead = Rows(
      "SELECT source, position, \"index\", event_id, type, entity, error, event "
      "FROM sidelog_dead_letters");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0]["event_id"], "e2.0");
  EXPECT_EQ(dead[0]["position"], 2);
  EXPECT_EQ(dead[0]["index"], 0);
  EXPECT_NE(dead[0]["error"].get<std::string>().find("CHECK constraint failed"), std::string::npos);
  EXPECT_EQ(Json::parse(dead[0]["event"].get<std::string>())["data"]["amount"], 5000);
}

TEST_F(ProjectionTest, ReopeningKeepsTheCheckpointAndTheRows) {
  {
    auto p = Open(Yaml());
    ASSERT_TRUE(p);
    ASSERT_TRUE(p->Apply({"orders", {Event(1, 0, "Created", "o1")}, Cursor{1, -1}}, {}).error.ok());
  }
  auto p = Open(Yaml());  // the schema runs again: it is idempotent
  ASSERT_TRUE(p);
  EXPECT_EQ(p->LoadCheckpoint("orders")->cursor, (Cursor{1, -1}));
  EXPECT_EQ(Rows("SELECT count(*) AS n FROM orders"), Json::parse(R"([{"n":1}])"));
}

TEST_F(ProjectionTest, AStatementThatDoesNotPrepareIsRefusedWithFileAndLine) {
  Status error;
  auto p = Open(Yaml("stop", "      UPDATE nope SET x = 1 WHERE id = :entity;\n"), &error);
  EXPECT_FALSE(p);
  EXPECT_EQ(error.message().rfind("cons.yaml:15: handlers[1].sql: statement 2 does not prepare: "
                                  "SQLite: no such table: nope",
                                  0),
            0u)
      << error.message();
}

TEST_F(ProjectionTest, ANonIdempotentSchemaIsExplainedOnTheSecondStart) {
  std::string yaml = Yaml();
  yaml.replace(yaml.find("IF NOT EXISTS "), 14, "");
  ASSERT_TRUE(Open(yaml));
  Status error;
  EXPECT_FALSE(Open(yaml, &error));
  EXPECT_EQ(error.message().rfind("cons.yaml:6: schema: the DDL fails", 0), 0u) << error.message();
  EXPECT_NE(error.message().find("IF NOT EXISTS"), std::string::npos);
}

TEST(Cursor, OrdersEventsAndWholeCommits) {
  Cursor mid{5, 2}, whole{5, -1}, none{};
  EXPECT_TRUE(none.Before(1, 0));
  EXPECT_TRUE(mid.Before(5, 3));
  EXPECT_FALSE(mid.Before(5, 2));
  EXPECT_FALSE(whole.Before(5, 9));
  EXPECT_TRUE(whole.Before(6, 0));
  EXPECT_TRUE(mid < whole);
  EXPECT_TRUE(whole < (Cursor{6, 0}));
  EXPECT_EQ(mid.LastEventId(), "5.2");
  EXPECT_EQ(whole.LastEventId(), "5");
}

}  // namespace
}  // namespace sidelog::consolidator
