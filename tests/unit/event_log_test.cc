#include "sidelog/event_log.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <random>
#include <thread>

#include "test_util.h"

namespace sidelog {
namespace {

using sidelog::testing::Ev;
using sidelog::testing::MustCompile;
using sidelog::testing::Req;
using sidelog::testing::TempDir;

constexpr const char* kOrderRules = R"({
  "reducers": {
    "ItemAdded": [{"op": "append", "path": "/items", "from": "/item"}],
    "PaymentReceived": [{"op": "increment", "path": "/paid", "from": "/amount"}],
    "OrderDeleted": [{"op": "delete"}]
  },
  "stateMachine": {"initial": "new", "strict": false, "transitions": [
    {"event": "OrderCreated", "from": ["new"], "to": "created"},
    {"event": "OrderPaid", "from": ["created"], "to": "paid"}]},
  "schemas": {"OrderCreated": {"type": "object", "required": ["customerId"]}}
})";

class EventLogTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(int snapshot_every = 100, LogMode mode = LogMode::kStandalone) {
    log_.reset();
    EventLogOptions o;
    o.path = dir_.File("log.db");
    o.snapshot_every = snapshot_every;
    o.mode = mode;
    o.durability = Durability::kNormal;
    o.max_events_per_commit = 10;
    auto log = EventLog::Open(o, {{"orders", MustCompile(kOrderRules)}, {"payments", nullptr}});
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    log_ = std::move(log).value();
  }

  AppendResult MustAppend(AppendRequest r) {
    auto res = log_->Append(std::move(r));
    EXPECT_TRUE(res.ok()) << res.status().ToString();
    return res.ok() ? *res : AppendResult{};
  }

  TempDir dir_;
  std::unique_ptr<EventLog> log_;
};

TEST_F(EventLogTest, FirstAppendCreatesVersionOneAtPositionOne) {
  auto r = MustAppend(Req("orders", "o1", {Ev("OrderCreated", {{"customerId", "c1"}})}));
  EXPECT_EQ(r.from_version, 1);
  EXPECT_EQ(r.version, 1);
  EXPECT_EQ(r.position, 1);
  EXPECT_FALSE(r.replay);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].id.size(), 36u);  // generated UUIDv7
  EXPECT_EQ(r.commit_id, CommitId("orders", "o1", {r.events[0].id}));
}

TEST_F(EventLogTest, MultiEventCommitSharesOnePositionWithConsecutiveVersions) {
  MustAppend(Req("orders", "o1", {Ev("OrderCreated", {{"customerId", "c1"}})}));
  auto r = MustAppend(Req("orders", "o1",
                          {Ev("ItemAdded", {{"item", 1}}), Ev("ItemAdded", {{"item", 2}}),
                           Ev("ItemAdded", {{"item", 3}})}));
  EXPECT_EQ(r.from_version, 2);
  EXPECT_EQ(r.version, 4);
  EXPECT_EQ(r.position, 2);
  auto events = log_->ReadEntity("orders", "o1", 1, 100);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->events.size(), 4u);
  for (int i = 1; i < 4; ++i) {
    EXPECT_EQ(events->events[i].position, 2);
    EXPECT_EQ(events->events[i].index, i - 1);
    EXPECT_EQ(events->events[i].version, i + 1);
  }
  EXPECT_FALSE(events->next.has_value());
}

TEST_F(EventLogTest, ExpectedVersionRules) {
  auto conflict = [&](ExpectedVersion ev, int64_t current) {
    auto r = log_->Append(Req("payments", "p1", {Ev("X")}, ev));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Status::Code::kConflict);
    EXPECT_EQ(r.status().context().current_version, current);
    EXPECT_EQ(r.status().context().expected_version, ev.ToString());
  };
  conflict(ExpectedVersion::Exists(), 0);
  conflict(ExpectedVersion::Exactly(3), 0);
  MustAppend(Req("payments", "p1", {Ev("X")}, ExpectedVersion::None()));
  conflict(ExpectedVersion::None(), 1);
  conflict(ExpectedVersion::Exactly(0), 1);
  conflict(ExpectedVersion::Exactly(2), 1);
  MustAppend(Req("payments", "p1", {Ev("X")}, ExpectedVersion::Exactly(1)));
  MustAppend(Req("payments", "p1", {Ev("X")}, ExpectedVersion::Exists()));
  MustAppend(Req("payments", "p1", {Ev("X")}, ExpectedVersion::Any()));
  EXPECT_EQ(log_->State("payments", "p1")->version, 4);
}

TEST_F(EventLogTest, ExpectedVersionParsesTheWireForms) {
  EXPECT_EQ(ExpectedVersion::FromJson(nullptr)->kind, ExpectedVersion::Kind::kAny);
  EXPECT_EQ(ExpectedVersion::FromJson("none")->kind, ExpectedVersion::Kind::kNone);
  EXPECT_EQ(ExpectedVersion::FromJson(0)->kind, ExpectedVersion::Kind::kNone);
  EXPECT_EQ(ExpectedVersion::FromJson("exists")->kind, ExpectedVersion::Kind::kExists);
  EXPECT_EQ(ExpectedVersion::FromJson(7)->version, 7);
  EXPECT_EQ(ExpectedVersion::FromJson("7")->version, 7);
  EXPECT_FALSE(ExpectedVersion::FromJson(-1).ok());
  EXPECT_FALSE(ExpectedVersion::FromJson(1.5).ok());
  EXPECT_FALSE(ExpectedVersion::FromJson("latest").ok());
  EXPECT_FALSE(ExpectedVersion::FromJson(Json::parse("18446744073709551615")).ok());
}

TEST_F(EventLogTest, FullReplayReturnsTheOriginalResult) {
  auto first =
      MustAppend(Req("payments", "p1", {Ev("A", {{"x", 1}}, "id-1"), Ev("B", {}, "id-2")}));
  MustAppend(Req("payments", "p1", {Ev("C")}));
  auto again =
      MustAppend(Req("payments", "p1", {Ev("A", {{"x", 1}}, "id-1"), Ev("B", {}, "id-2")}));
  EXPECT_TRUE(again.replay);
  EXPECT_EQ(again.position, first.position);
  EXPECT_EQ(again.from_version, 1);
  EXPECT_EQ(again.version, 2);
  EXPECT_EQ(again.commit_id, first.commit_id);
  EXPECT_EQ(log_->State("payments", "p1")->version, 3);  // nothing new stored
}

TEST_F(EventLogTest, ReplayWithStaleExpectedVersionIsStillAReplay) {
  MustAppend(Req("payments", "p1", {Ev("A", {}, "id-1")}, ExpectedVersion::None()));
  MustAppend(Req("payments", "p1", {Ev("B")}));
  auto again = MustAppend(Req("payments", "p1", {Ev("A", {}, "id-1")}, ExpectedVersion::None()));
  EXPECT_TRUE(again.replay);
  EXPECT_EQ(again.version, 1);
}

TEST_F(EventLogTest, PartialOverlapIsAConflict) {
  MustAppend(Req("payments", "p1", {Ev("A", {}, "id-1")}));
  auto r = log_->Append(Req("payments", "p1", {Ev("A", {}, "id-1"), Ev("B", {}, "id-2")}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kConflict);
  EXPECT_NE(r.status().message().find("id-2"), std::string::npos);
  EXPECT_EQ(log_->State("payments", "p1")->version, 1);
}

TEST_F(EventLogTest, SubsetOfACommitIsAConflict) {
  MustAppend(Req("payments", "p1", {Ev("A", {}, "id-1"), Ev("B", {}, "id-2")}));
  auto r = log_->Append(Req("payments", "p1", {Ev("A", {}, "id-1")}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kConflict);
}

TEST_F(EventLogTest, IdsSpanningTwoCommitsAreAConflict) {
  MustAppend(Req("payments", "p1", {Ev("A", {}, "id-1")}));
  MustAppend(Req("payments", "p1", {Ev("B", {}, "id-2")}));
  auto r = log_->Append(Req("payments", "p1", {Ev("A", {}, "id-1"), Ev("B", {}, "id-2")}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kConflict);
  EXPECT_NE(r.status().message().find("2 different commits"), std::string::npos);
}

TEST_F(EventLogTest, SameIdWithOtherContentIsAConflict) {
  MustAppend(Req("payments", "p1", {Ev("A", {{"x", 1}}, "id-1")}));
  for (auto e : {Ev("A", {{"x", 2}}, "id-1"), Ev("Other", {{"x", 1}}, "id-1")}) {
    auto r = log_->Append(Req("payments", "p1", {e}));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Status::Code::kConflict);
    EXPECT_NE(r.status().message().find("other content"), std::string::npos);
  }
  auto meta = Ev("A", {{"x", 1}}, "id-1");
  meta.metadata["correlationid"] = "c";
  EXPECT_EQ(log_->Append(Req("payments", "p1", {meta})).status().code(), Status::Code::kConflict);
}

TEST_F(EventLogTest, SameIdOnAnotherEntityIsIndependent) {
  MustAppend(Req("payments", "p1", {Ev("A", {}, "id-1")}));
  auto r = MustAppend(Req("payments", "p2", {Ev("A", {}, "id-1")}));
  EXPECT_FALSE(r.replay);
}

// Rows of the id tables for one entity, read from the file: how its ids are stored.
int64_t IdRows(const std::string& path, const std::string& table, const std::string& entity) {
  sqlite3* db = nullptr;
  int64_t n = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* q = nullptr;
    std::string sql = "SELECT count(*) FROM " + table + " WHERE entity = ?";
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &q, nullptr) == SQLITE_OK) {
      sqlite3_bind_text(q, 1, entity.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(q) == SQLITE_ROW) n = sqlite3_column_int64(q, 0);
    }
    sqlite3_finalize(q);
  }
  sqlite3_close(db);
  return n;
}

// How many events of the commit at `position` carry their "id" in the stored JSON.
int64_t StoredIdKeys(const std::string& path, int64_t position) {
  sqlite3* db = nullptr;
  int64_t n = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM commits, json_each(commits.events) "
                           "WHERE position = ? AND json_each.value ->> 'id' IS NOT NULL",
                           -1, &q, nullptr) == SQLITE_OK) {
      sqlite3_bind_int64(q, 1, position);
      if (sqlite3_step(q) == SQLITE_ROW) n = sqlite3_column_int64(q, 0);
    }
    sqlite3_finalize(q);
  }
  sqlite3_close(db);
  return n;
}

std::vector<EventInput> Resend(const AppendResult& r, const std::vector<EventInput>& events) {
  std::vector<EventInput> out = events;
  for (size_t i = 0; i < out.size(); ++i) out[i].id = r.events[i].id;
  return out;
}

// The ids the log generates for a commit are consecutive, and stored as one run: a retry with
// them replays, and every idempotency rule holds as for ids stored one by one.
TEST_F(EventLogTest, GeneratedIdsOfACommitAreOneRunThatReplaysLikeSingleIds) {
  std::vector<EventInput> events;
  events.reserve(5);
  for (int i = 0; i < 5; ++i) events.push_back(Ev("Paid", {{"n", i}}));
  auto first = MustAppend(Req("payments", "p1", events));
  ASSERT_EQ(first.events.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(UuidOffset(first.events[0].id, first.events[i].id), i) << first.events[i].id;
  }
  log_->Close();
  EXPECT_EQ(IdRows(dir_.File("log.db"), "event_id_runs", "p1"), 1);
  EXPECT_EQ(IdRows(dir_.File("log.db"), "event_ids", "p1"), 0);
  EXPECT_EQ(StoredIdKeys(dir_.File("log.db"), first.position), 1) << "the others are derived";
  Reopen();

  // Reads give every event its id back, from any version and through the stream.
  auto read = log_->ReadEntity("payments", "p1", 3, 10);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->events.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(read->events[i].id, first.events[i + 2].id);
  auto page = log_->ReadStream("payments", 0, 10, {});
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->events.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(page->events[i].id, first.events[i].id);

  auto again = MustAppend(Req("payments", "p1", Resend(first, events)));
  EXPECT_TRUE(again.replay);
  EXPECT_EQ(again.position, first.position);
  EXPECT_EQ(again.version, 5);

  auto subset = Resend(first, events);
  subset.resize(3);
  EXPECT_EQ(log_->Append(Req("payments", "p1", subset)).status().code(), Status::Code::kConflict);
  auto reordered = Resend(first, events);
  std::swap(reordered[0], reordered[1]);
  EXPECT_EQ(log_->Append(Req("payments", "p1", reordered)).status().code(),
            Status::Code::kConflict);
  auto changed = Resend(first, events);
  changed[4].data = {{"n", 99}};
  auto other = log_->Append(Req("payments", "p1", changed));
  EXPECT_EQ(other.status().code(), Status::Code::kConflict);
  EXPECT_NE(other.status().message().find("other content"), std::string::npos)
      << other.status().message();
  EXPECT_EQ(log_->State("payments", "p1")->version, 5);

  // Ids belong to their entity: the same ids on another entity are new events there. That run
  // would overlap p1's, so they are stored one by one, and both entities replay.
  auto p2 = MustAppend(Req("payments", "p2", Resend(first, events)));
  EXPECT_FALSE(p2.replay);
  EXPECT_TRUE(MustAppend(Req("payments", "p2", Resend(first, events))).replay);
  EXPECT_TRUE(MustAppend(Req("payments", "p1", Resend(first, events))).replay);
  log_->Close();
  EXPECT_EQ(IdRows(dir_.File("log.db"), "event_id_runs", "p2"), 0);
  EXPECT_EQ(IdRows(dir_.File("log.db"), "event_ids", "p2"), 5);
}

// Client ids that happen to be consecutive UUIDs form a run too; a run overlapping another
// falls back to single rows; a commit mixing given and generated ids is stored id by id.
TEST_F(EventLogTest, ConsecutiveClientIdsFormARunAndOverlapsFallBackToSingleIds) {
  const std::string base = NewUuidV7();
  auto ids = [&](int from, int n, const std::string& type) {
    std::vector<EventInput> out;
    out.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) out.push_back(Ev(type, {}, UuidPlus(base, from + i)));
    return out;
  };
  MustAppend(Req("payments", "a", ids(0, 4, "A")));
  MustAppend(Req("payments", "b", ids(2, 4, "B")));  // overlaps a's run
  auto mixed = MustAppend(Req("payments", "c", {Ev("C", Json::object(), "given"), Ev("C")}));
  EXPECT_TRUE(MustAppend(Req("payments", "a", ids(0, 4, "A"))).replay);
  EXPECT_TRUE(MustAppend(Req("payments", "b", ids(2, 4, "B"))).replay);
  EXPECT_TRUE(MustAppend(Req("payments", "c",
                             {Ev("C", Json::object(), "given"),
                              Ev("C", Json::object(), mixed.events[1].id)}))
                  .replay);
  // An id of a's run, alone, on a: a subset of a stored commit.
  EXPECT_EQ(log_->Append(Req("payments", "a", ids(3, 1, "A"))).status().code(),
            Status::Code::kConflict);
  log_->Close();
  const std::string path = dir_.File("log.db");
  EXPECT_EQ(IdRows(path, "event_id_runs", "a"), 1);
  EXPECT_EQ(IdRows(path, "event_ids", "a"), 0);
  EXPECT_EQ(IdRows(path, "event_id_runs", "b"), 0);
  EXPECT_EQ(IdRows(path, "event_ids", "b"), 4);
  EXPECT_EQ(IdRows(path, "event_id_runs", "c"), 0);
  EXPECT_EQ(IdRows(path, "event_ids", "c"), 2);
}

TEST_F(EventLogTest, DuplicateIdInsideOneCommitIsInvalid) {
  auto r = log_->Append(Req("payments", "p1", {Ev("A", {}, "id-1"), Ev("B", {}, "id-1")}));
  EXPECT_EQ(r.status().code(), Status::Code::kInvalid);
}

TEST_F(EventLogTest, BadInputIsRefusedBeforeAnythingIsStored) {
  EXPECT_EQ(log_->Append(Req("nope", "o1", {Ev("A")})).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(log_->Append(Req("orders", "a b", {Ev("A")})).status().code(), Status::Code::kInvalid);
  EXPECT_EQ(log_->Append(Req("orders", "o1", {})).status().code(), Status::Code::kInvalid);
  EXPECT_EQ(log_->Append(Req("orders", "o1", {Ev("1bad")})).status().code(),
            Status::Code::kInvalid);
  std::vector<EventInput> many(11, Ev("A"));
  EXPECT_EQ(log_->Append(Req("orders", "o1", many)).status().code(), Status::Code::kTooLarge);
  auto schema = log_->Append(Req("orders", "o1", {Ev("OrderCreated", Json::object())}));
  EXPECT_EQ(schema.status().code(), Status::Code::kRejected);
  EXPECT_NE(schema.status().message().find("customerId"), std::string::npos);
  EXPECT_EQ(log_->Stats("orders")->events, 0);
}

TEST_F(EventLogTest, RejectedTransitionChangesNothing) {
  MustAppend(Req("orders", "o1", {Ev("OrderCreated", {{"customerId", "c"}})}));
  auto r = log_->Append(Req(
      "orders", "o1", {Ev("ItemAdded", {{"item", 1}}), Ev("OrderCreated", {{"customerId", "c"}})}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kRejected);
  EXPECT_EQ(r.status().message().rfind("events[1] (OrderCreated)", 0), 0u) << r.status().message();
  auto s = log_->State("orders", "o1");
  EXPECT_EQ(s->version, 1);
  EXPECT_FALSE(s->state.contains("items"));
  // And the writer's cached state was not polluted: the next append folds from version 1.
  MustAppend(Req("orders", "o1", {Ev("ItemAdded", {{"item", 7}})}));
  EXPECT_EQ(log_->State("orders", "o1")->state["items"], Json::parse("[7]"));
}

TEST_F(EventLogTest, ReducerTypeErrorIsRejectedNotACrash) {
  auto r = log_->Append(Req("orders", "o1", {Ev("PaymentReceived", {{"amount", "ten"}})}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kRejected);
  EXPECT_EQ(log_->State("orders", "o1").status().code(), Status::Code::kNotFound);
}

TEST_F(EventLogTest, DeletedEntityIsGoneForStateAndAppends) {
  MustAppend(Req("orders", "o1", {Ev("OrderCreated", {{"customerId", "c"}})}));
  MustAppend(Req("orders", "o1", {Ev("OrderDeleted", {}, "del-1")}));
  auto state = log_->State("orders", "o1");
  ASSERT_EQ(state.status().code(), Status::Code::kGone);
  EXPECT_EQ(state.status().context().current_version, 2);
  auto append = log_->Append(Req("orders", "o1", {Ev("ItemAdded", {{"item", 1}})}));
  ASSERT_EQ(append.status().code(), Status::Code::kGone);
  EXPECT_EQ(append.status().context().current_version, 2);
  // A retry of the deleting commit is still a replay, and history stays readable.
  EXPECT_TRUE(MustAppend(Req("orders", "o1", {Ev("OrderDeleted", {}, "del-1")})).replay);
  EXPECT_TRUE(log_->State("orders", "o1", {1, std::nullopt}).ok());
  EXPECT_EQ(log_->ReadEntity("orders", "o1", 1, 10)->events.size(), 2u);
  auto listed = log_->ListEntities("orders", "", "", 10);
  ASSERT_EQ(listed->entities.size(), 1u);
  EXPECT_TRUE(listed->entities[0].deleted);
  EXPECT_EQ(listed->entities[0].version, 2);
}

TEST_F(EventLogTest, EventsAfterDeleteInOneCommitAreRejected) {
  auto r = log_->Append(Req("orders", "o1", {Ev("OrderDeleted"), Ev("ItemAdded", {{"item", 1}})}));
  EXPECT_EQ(r.status().code(), Status::Code::kRejected);
}

TEST_F(EventLogTest, TimeNeverDecreasesWithinAnEntity) {
  TimeMicros prev = 0;
  for (int i = 0; i < 50; ++i) {
    auto r = MustAppend(Req("payments", "p1", {Ev("A")}));
    EXPECT_GE(r.time, prev);
    prev = r.time;
  }
  auto events = log_->ReadEntity("payments", "p1", 1, 100);
  for (size_t i = 1; i < events->events.size(); ++i) {
    EXPECT_GE(events->events[i].time, events->events[i - 1].time);
  }
}

TEST_F(EventLogTest, StateAtVersionAndAtTime) {
  MustAppend(Req("orders", "o1", {Ev("OrderCreated", {{"customerId", "c"}})}));
  auto t1 = MustAppend(Req("orders", "o1", {Ev("PaymentReceived", {{"amount", 5}})})).time;
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  MustAppend(Req("orders", "o1", {Ev("PaymentReceived", {{"amount", 7}})}));

  auto v2 = log_->State("orders", "o1", {2, std::nullopt});
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->state["paid"], 5);
  EXPECT_EQ(v2->version, 2);
  EXPECT_EQ(v2->status, "created");
  EXPECT_EQ(log_->State("orders", "o1")->state["paid"], 12);

  auto at = log_->State("orders", "o1", {std::nullopt, t1 + 1000});
  ASSERT_TRUE(at.ok());
  EXPECT_EQ(at->version, 2);
  EXPECT_EQ(at->updated_at, t1);
  auto before = log_->State("orders", "o1", {std::nullopt, 1000});
  EXPECT_EQ(before.status().code(), Status::Code::kNotFound);
  EXPECT_EQ(log_->State("orders", "o1", {9, std::nullopt}).status().code(),
            Status::Code::kNotFound);
}

TEST_F(EventLogTest, StoredStateMachineStateIsOnEachEvent) {
  MustAppend(Req("orders", "o1", {Ev("OrderCreated", {{"customerId", "c"}}), Ev("OrderPaid")}));
  auto events = log_->ReadEntity("orders", "o1", 1, 10);
  EXPECT_EQ(events->events[0].state, "created");
  EXPECT_EQ(events->events[1].state, "paid");
}

TEST_F(EventLogTest, EntityReadsPageWithoutSplittingCommits) {
  MustAppend(Req("payments", "p1", {Ev("A"), Ev("A")}));
  MustAppend(Req("payments", "p1", {Ev("A"), Ev("A"), Ev("A")}));
  MustAppend(Req("payments", "p1", {Ev("A")}));
  auto page = log_->ReadEntity("payments", "p1", 1, 3);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->events.size(), 5u);  // ran past the limit to finish commit 2
  EXPECT_EQ(page->next, 6);
  auto last = log_->ReadEntity("payments", "p1", *page->next, 3);
  EXPECT_EQ(last->events.size(), 1u);
  EXPECT_FALSE(last->next.has_value());
  EXPECT_EQ(log_->ReadEntity("payments", "nobody", 1, 3).status().code(), Status::Code::kNotFound);
}

TEST_F(EventLogTest, StreamReadsAreOrderedFilteredAndPaged) {
  for (int i = 0; i < 10; ++i) {
    MustAppend(Req("payments", "p" + std::to_string(i % 3),
                   {Ev(i % 2 ? "Odd" : "Even", {{"i", i}}), Ev("Tail", {{"i", i}})}));
  }
  std::vector<int64_t> positions;
  int64_t from = 0;
  for (;;) {
    auto page = log_->ReadStream("payments", from, 3);
    ASSERT_TRUE(page.ok());
    for (size_t k = 0; k < page->events.size(); ++k) {
      if (page->events[k].index == 0) positions.push_back(page->events[k].position);
    }
    if (page->events.empty()) break;
    EXPECT_EQ(page->events.size() % 2, 0u);  // commits are never split
    from = page->next;
  }
  EXPECT_EQ(positions, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));

  auto odd = log_->ReadStream("payments", 0, 100, {"Odd"});
  ASSERT_EQ(odd->events.size(), 5u);
  for (const auto& e : odd->events) EXPECT_EQ(e.type, "Odd");
  EXPECT_EQ(odd->next, 10);
  auto none = log_->ReadStream("payments", 0, 100, {"Missing"});
  EXPECT_TRUE(none->events.empty());
  EXPECT_EQ(none->next, 10);  // the last position scanned
  EXPECT_EQ(log_->ReadStream("payments", 10, 100)->events.size(), 0u);
}

TEST_F(EventLogTest, ListsEntitiesByPrefixWithPaging) {
  for (auto id : {"cust-1", "cust-2", "cust-3", "order-1", "cust~x"}) {
    MustAppend(Req("payments", id, {Ev("A")}));
  }
  MustAppend(Req("payments", "cust-2", {Ev("A"), Ev("A")}));  // versions come from the commits
  auto page = log_->ListEntities("payments", "cust-", "", 2);
  ASSERT_EQ(page->entities.size(), 2u);
  EXPECT_EQ(page->entities[0].id, "cust-1");
  EXPECT_EQ(page->entities[0].version, 1);
  EXPECT_EQ(page->entities[1].id, "cust-2");
  EXPECT_EQ(page->entities[1].version, 3);
  EXPECT_FALSE(page->entities[1].deleted);
  ASSERT_TRUE(page->next.has_value());
  auto rest = log_->ListEntities("payments", "cust-", *page->next, 2);
  ASSERT_EQ(rest->entities.size(), 1u);
  EXPECT_EQ(rest->entities[0].id, "cust-3");
  EXPECT_EQ(log_->ListEntities("payments", "", "", 100)->entities.size(), 5u);
}

TEST_F(EventLogTest, EverythingSurvivesReopen) {
  MustAppend(Req("orders", "o1",
                 {Ev("OrderCreated", {{"customerId", "c"}}), Ev("ItemAdded", {{"item", 1}})}));
  Reopen();
  auto s = log_->State("orders", "o1");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->version, 2);
  EXPECT_EQ(s->status, "created");
  EXPECT_EQ(log_->Stats("orders")->last_position, 1);
  auto r = MustAppend(Req("orders", "o1", {Ev("OrderPaid")}, ExpectedVersion::Exactly(2)));
  EXPECT_EQ(r.position, 2);
}

TEST_F(EventLogTest, RefusesToOpenInTheOtherMode) {
  MustAppend(Req("payments", "p1", {Ev("A")}));
  log_.reset();
  EventLogOptions o;
  o.path = dir_.File("log.db");
  o.mode = LogMode::kReplicated;
  auto log = EventLog::Open(o, {{"payments", nullptr}});
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.status().message().find("standalone mode"), std::string::npos);
}

TEST_F(EventLogTest, SubscribersHearOfNewWatermarks) {
  std::atomic<int64_t> seen{0};
  int id = log_->Subscribe([&](const std::string& stream, int64_t wm) {
    if (stream == "payments") seen = wm;
  });
  MustAppend(Req("payments", "p1", {Ev("A")}));
  MustAppend(Req("payments", "p1", {Ev("A")}));
  EXPECT_EQ(seen.load(), 2);
  log_->Unsubscribe(id);
  MustAppend(Req("payments", "p1", {Ev("A")}));
  EXPECT_EQ(seen.load(), 2);
}

TEST_F(EventLogTest, AppendAfterCloseIsUnavailable) {
  log_->Close();
  auto r = log_->Append(Req("payments", "p1", {Ev("A")}));
  EXPECT_EQ(r.status().code(), Status::Code::kUnavailable);
}

// Snapshots must never change a result: over random histories, the state at every version with
// snapshots every 3 versions equals a full fold without snapshots.
TEST_F(EventLogTest, SnapshotsGiveTheSameStateAsAFullFold) {
  std::mt19937 rng(42);
  std::vector<std::string> entities = {"a", "b", "c"};
  for (int round = 0; round < 3; ++round) {
    Reopen(3);
    for (int i = 0; i < 60; ++i) {
      const auto& ent = entities[rng() % entities.size()];
      std::vector<EventInput> events;
      int n = 1 + static_cast<int>(rng() % 3);
      for (int k = 0; k < n; ++k) {
        switch (rng() % 4) {
          case 0:
            events.push_back(Ev("ItemAdded", {{"item", static_cast<int>(rng() % 100)}}));
            break;
          case 1:
            events.push_back(Ev("PaymentReceived", {{"amount", static_cast<int>(rng() % 10)}}));
            break;
          case 2:
            events.push_back(Ev("Renamed", {{"name", "n" + std::to_string(rng() % 5)}}));
            break;
          default:
            events.push_back(
                Ev("Noted", {{"note", {{"k" + std::to_string(rng() % 3), static_cast<int>(i)}}}}));
        }
      }
      MustAppend(Req("orders", ent + std::to_string(round), events));
    }
  }
  std::map<std::string, std::vector<Json>> with_snapshots;
  auto collect = [&](std::map<std::string, std::vector<Json>>* out) {
    for (int round = 0; round < 3; ++round) {
      for (const auto& e : entities) {
        std::string id = e + std::to_string(round);
        auto head = log_->State("orders", id);
        if (!head.ok()) continue;
        for (int64_t v = 1; v <= head->version; ++v) {
          auto s = log_->State("orders", id, {v, std::nullopt});
          ASSERT_TRUE(s.ok());
          (*out)[id].push_back(Json::array({s->state, s->status, s->version}));
        }
      }
    }
  };
  collect(&with_snapshots);
  // Reopen with equivalent rules under a new hash: the old snapshots are dropped, and with
  // snapshot_every = 0 every read is a full fold.
  std::map<std::string, std::vector<Json>> full;
  log_.reset();
  EventLogOptions o;
  o.path = dir_.File("log.db");
  o.snapshot_every = 0;
  auto other_rules = Json::parse(kOrderRules);
  other_rules["reducers"]["Unused"] = Json::array({{{"op", "delete"}}});  // new hash
  auto log =
      EventLog::Open(o, {{"orders", MustCompile(other_rules.dump())}, {"payments", nullptr}});
  ASSERT_TRUE(log.ok());
  log_ = std::move(log).value();
  collect(&full);
  EXPECT_FALSE(with_snapshots.empty());
  EXPECT_EQ(with_snapshots, full);
}

}  // namespace
}  // namespace sidelog

namespace sidelog {
namespace {

using sidelog::testing::Ev;
using sidelog::testing::MustCompile;
using sidelog::testing::Req;
using sidelog::testing::TempDir;

// Ids are checked before rules: a retry of a stored commit replays even after the schema changed
// so that it would now reject the events.
TEST(EventLogRules, RetryOfAStoredCommitReplaysAfterTheSchemaTightened) {
  TempDir dir;
  EventLogOptions o;
  o.path = dir.File("log.db");
  o.durability = Durability::kNormal;
  {
    auto log = EventLog::Open(o, {{"orders", nullptr}});
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->Append(Req("orders", "o1", {Ev("Created", {{"a", 1}}, "id-1")})).ok());
  }
  auto strict =
      MustCompile(R"({"schemas":{"Created":{"type":"object","required":["customerId"]}}})");
  auto log = EventLog::Open(o, {{"orders", strict}});
  ASSERT_TRUE(log.ok());
  auto again = (*log)->Append(Req("orders", "o1", {Ev("Created", {{"a", 1}}, "id-1")}));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(again->replay);
  auto fresh = (*log)->Append(Req("orders", "o2", {Ev("Created", {{"a", 1}}, "id-2")}));
  EXPECT_EQ(fresh.status().code(), Status::Code::kRejected);
  EXPECT_EQ((*log)->Stats("orders")->events, 1);
}

}  // namespace
}  // namespace sidelog
