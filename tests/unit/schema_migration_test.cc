// A log file written with schema 1 (one row per event) opens under the current schema with
// everything it held: events, their order, states, sources, metadata, idempotency.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "sidelog/event_log.h"
#include "test_util.h"

namespace sidelog {
namespace {

using sidelog::testing::Ev;
using sidelog::testing::Req;
using sidelog::testing::TempDir;

// Schema 1 as released, and the rows a schema-1 build wrote for two commits of one order.
constexpr const char* kSchemaOneLog = R"sql(
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE streams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
  last_position INTEGER NOT NULL DEFAULT 0, watermark INTEGER NOT NULL DEFAULT 0,
  entities INTEGER NOT NULL DEFAULT 0, commits INTEGER NOT NULL DEFAULT 0,
  events INTEGER NOT NULL DEFAULT 0, origin TEXT);
CREATE TABLE commits (stream_id INTEGER NOT NULL, position INTEGER NOT NULL,
  entity TEXT NOT NULL, commit_id TEXT NOT NULL, first_version INTEGER NOT NULL,
  last_version INTEGER NOT NULL, PRIMARY KEY (stream_id, position)) WITHOUT ROWID;
CREATE TABLE entities (stream_id INTEGER NOT NULL, entity TEXT NOT NULL,
  version INTEGER NOT NULL, time INTEGER NOT NULL, status TEXT NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (stream_id, entity)) WITHOUT ROWID;
CREATE TABLE events (stream_id INTEGER NOT NULL, position INTEGER NOT NULL,
  idx INTEGER NOT NULL, entity TEXT NOT NULL, version INTEGER NOT NULL, id TEXT NOT NULL,
  type TEXT NOT NULL, time INTEGER NOT NULL, status TEXT NOT NULL, source TEXT NOT NULL,
  data TEXT NOT NULL, metadata TEXT, PRIMARY KEY (stream_id, position, idx)) WITHOUT ROWID;
CREATE UNIQUE INDEX events_by_entity ON events (stream_id, entity, version);
CREATE UNIQUE INDEX events_by_id ON events (stream_id, id, entity);
CREATE TABLE snapshots (stream_id INTEGER NOT NULL, entity TEXT NOT NULL,
  version INTEGER NOT NULL, rules_hash TEXT NOT NULL, status TEXT NOT NULL,
  deleted INTEGER NOT NULL, time INTEGER NOT NULL, state TEXT NOT NULL,
  PRIMARY KEY (stream_id, entity, version)) WITHOUT ROWID;

INSERT INTO meta VALUES ('mode', 'standalone');
INSERT INTO streams VALUES (1, 'orders', 2, 2, 1, 2, 3, NULL);
INSERT INTO commits VALUES (1, 1, 'o1', 'c1', 1, 2), (1, 2, 'o1', 'c2', 3, 3);
INSERT INTO events VALUES
  (1, 1, 0, 'o1', 1, 'id-1', 'OrderPlaced', 1000, 'placed', '/namespaces/a/services/shop',
   '{"total":10,"note":"say \"hi\"\n"}', NULL),
  (1, 1, 1, 'o1', 2, 'id-2', 'ItemAdded', 1000, 'placed', '/namespaces/a/services/shop',
   '{"sku":"x"}', '{"traceparent":"00-abc-def-01"}'),
  (1, 2, 0, 'o1', 3, 'id-3', 'OrderPaid', 5000, '', '/namespaces/a/services/billing',
   '{"paid":true}', NULL);
INSERT INTO entities VALUES (1, 'o1', 3, 5000, '', 0);
INSERT INTO streams VALUES (2, 'payments', 1, 1, 1, 1, 1, NULL);
INSERT INTO commits VALUES (2, 1, 'p1', 'c3', 1, 1);
INSERT INTO events VALUES
  (2, 1, 0, 'p1', 1, 'id-1', 'PaymentReceived', 2000, '', '/namespaces/a/services/billing',
   '{"amount":10}', NULL);
INSERT INTO entities VALUES (2, 'p1', 1, 2000, '', 0);
PRAGMA user_version = 1;
)sql";

class SchemaMigration : public ::testing::Test {
 protected:
  void SetUp() override {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(dir_.File("log.db").c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db, kSchemaOneLog, nullptr, nullptr, &err), SQLITE_OK) << err;
    sqlite3_close(db);
    EventLogOptions o;
    o.path = dir_.File("log.db");
    o.durability = Durability::kNormal;
    auto log = EventLog::Open(o, {{"orders", nullptr}, {"payments", nullptr}});
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    log_ = std::move(log).value();
  }

  TempDir dir_;
  std::unique_ptr<EventLog> log_;
};

TEST_F(SchemaMigration, EntityEventsKeepTheirOrderStateSourceAndMetadata) {
  auto read = log_->ReadEntity("orders", "o1", 1, 100);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->events.size(), 3u);
  EXPECT_EQ(read->version, 3);
  const auto& e = read->events;
  EXPECT_EQ(e[0].id, "id-1");
  EXPECT_EQ(e[0].version, 1);
  EXPECT_EQ(e[0].position, 1);
  EXPECT_EQ(e[0].index, 0);
  EXPECT_EQ(e[0].state, "placed");
  EXPECT_EQ(e[0].time, 1000);
  EXPECT_EQ(e[0].data, Json::parse(R"({"total":10,"note":"say \"hi\"\n"})"));
  EXPECT_TRUE(e[0].metadata.empty());
  EXPECT_EQ(e[1].id, "id-2");
  EXPECT_EQ(e[1].index, 1);
  EXPECT_EQ(e[1].metadata.at("traceparent"), "00-abc-def-01");
  EXPECT_EQ(e[1].source, "/namespaces/a/services/shop");
  EXPECT_EQ(e[2].id, "id-3");
  EXPECT_EQ(e[2].version, 3);
  EXPECT_EQ(e[2].position, 2);
  EXPECT_EQ(e[2].state, "");
  EXPECT_EQ(e[2].source, "/namespaces/a/services/billing");

  auto listed = log_->ListEntities("orders", "", "", 10);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  ASSERT_EQ(listed->entities.size(), 1u);
  EXPECT_EQ(listed->entities[0].id, "o1");
  EXPECT_EQ(listed->entities[0].version, 3);
  EXPECT_FALSE(listed->entities[0].deleted);

  auto from_two = log_->ReadEntity("orders", "o1", 2, 100);
  ASSERT_TRUE(from_two.ok());
  ASSERT_EQ(from_two->events.size(), 2u);
  EXPECT_EQ(from_two->events[0].id, "id-2");
}

TEST_F(SchemaMigration, StreamReadsFiltersAndStateAtVersionOrTime) {
  auto all = log_->ReadStream("orders", 0, 100, {});
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->events.size(), 3u);
  EXPECT_EQ(all->next, 2);
  auto paid = log_->ReadStream("orders", 0, 100, {"OrderPaid"});
  ASSERT_TRUE(paid.ok());
  ASSERT_EQ(paid->events.size(), 1u);
  EXPECT_EQ(paid->events[0].id, "id-3");

  auto now = log_->State("orders", "o1", {});
  ASSERT_TRUE(now.ok()) << now.status().ToString();
  EXPECT_EQ(now->version, 3);
  EXPECT_EQ(now->state, Json::parse(R"({"total":10,"note":"say \"hi\"\n","sku":"x","paid":true})"));
  auto at_time = log_->State("orders", "o1", {std::nullopt, 4999});
  ASSERT_TRUE(at_time.ok()) << at_time.status().ToString();
  EXPECT_EQ(at_time->version, 2);
  auto before = log_->State("orders", "o1", {std::nullopt, 999});
  EXPECT_EQ(before.status().code(), Status::Code::kNotFound);
}

TEST_F(SchemaMigration, MigratedCommitsReplayAndNewOnesFollowThem) {
  auto req = Req("orders", "o1",
                 {Ev("OrderPlaced", Json::parse(R"({"total":10,"note":"say \"hi\"\n"})"), "id-1"),
                  Ev("ItemAdded", {{"sku", "x"}}, "id-2")});
  req.events[1].metadata = {{"traceparent", "00-abc-def-01"}};
  auto replay = log_->Append(req);
  ASSERT_TRUE(replay.ok()) << replay.status().ToString();
  EXPECT_TRUE(replay->replay);
  EXPECT_EQ(replay->position, 1);
  EXPECT_EQ(replay->version, 2);
  EXPECT_EQ(replay->commit_id, "c1");

  auto other = Req("orders", "o1", {Ev("OrderPaid", {{"paid", false}}, "id-3")});
  EXPECT_EQ(log_->Append(other).status().code(), Status::Code::kConflict)
      << "same id, other content";

  auto next = log_->Append(Req("orders", "o1", {Ev("OrderShipped")}, ExpectedVersion::Exactly(3)));
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(next->version, 4);
  EXPECT_EQ(next->position, 3);
  auto read = log_->ReadEntity("orders", "o1", 4, 100);
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->events.size(), 1u);
  EXPECT_EQ(read->events[0].type, "OrderShipped");
}

// Schema 6 keys commits by stream id and position in one integer: two streams' commits at the
// same positions stay apart, and each stream's next position follows its own.
TEST_F(SchemaMigration, EachStreamKeepsItsOwnCommitsAndPositions) {
  auto payments = log_->ReadStream("payments", 0, 100, {});
  ASSERT_TRUE(payments.ok()) << payments.status().ToString();
  ASSERT_EQ(payments->events.size(), 1u);
  EXPECT_EQ(payments->events[0].type, "PaymentReceived");
  EXPECT_EQ(payments->events[0].entity, "p1");
  EXPECT_EQ(payments->events[0].position, 1);

  auto paid = log_->Append(
      Req("payments", "p1", {Ev("PaymentReceived", {{"amount", 5}})}, ExpectedVersion::Exactly(1)));
  ASSERT_TRUE(paid.ok()) << paid.status().ToString();
  EXPECT_EQ(paid->position, 2);
  auto shipped = log_->Append(Req("orders", "o1", {Ev("OrderShipped")}));
  ASSERT_TRUE(shipped.ok()) << shipped.status().ToString();
  EXPECT_EQ(shipped->position, 3);

  auto after_one = log_->ReadStream("payments", 1, 100, {});
  ASSERT_TRUE(after_one.ok());
  ASSERT_EQ(after_one->events.size(), 1u);
  EXPECT_EQ(after_one->events[0].position, 2);
  auto orders = log_->ReadStream("orders", 0, 100, {});
  ASSERT_TRUE(orders.ok());
  ASSERT_EQ(orders->events.size(), 4u);
  for (const auto& e : orders->events) EXPECT_EQ(e.entity, "o1");
  auto p1 = log_->ReadEntity("payments", "p1", 1, 100);
  ASSERT_TRUE(p1.ok());
  ASSERT_EQ(p1->events.size(), 2u);
  EXPECT_EQ(p1->events[1].position, 2);
}

TEST(SchemaMigrationRefusal, ALogFromANewerBuildIsRefused) {
  TempDir dir;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir.File("log.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EventLogOptions o;
  o.path = dir.File("log.db");
  auto log = EventLog::Open(o, {{"orders", nullptr}, {"payments", nullptr}});
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.status().message().find("newer than this build"), std::string::npos)
      << log.status().message();
}

}  // namespace
}  // namespace sidelog
