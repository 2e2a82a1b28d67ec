#include "sidelog/event.h"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <thread>
#include <vector>

namespace sidelog {
namespace {

TEST(Time, FormatsRfc3339WithMicroseconds) {
  EXPECT_EQ(FormatTime(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(FormatTime(1795687200123456), "2026-11-26T10:00:00.123456Z");
}

TEST(Time, ParsesOffsetsAndFractions) {
  EXPECT_EQ(*ParseTime("2026-11-26T10:00:00.123456Z"), 1795687200123456);
  EXPECT_EQ(*ParseTime("2026-11-26T10:00:00Z"), 1795687200000000);
  EXPECT_EQ(*ParseTime("2026-11-26T11:30:00+01:30"), 1795687200000000);
  EXPECT_EQ(*ParseTime("2026-11-26T10:00:00.5Z"), 1795687200500000);
  EXPECT_EQ(*ParseTime("2026-11-26T10:00:00.123456789Z"), 1795687200123456);
}

TEST(Time, RejectsMalformedTimes) {
  for (const char* bad :
       {"", "yesterday", "2026-11-26", "2026-11-26T10:00:00", "2026-13-26T10:00:00Z",
        "2026-11-26T10:00:00.Z", "2026-11-26T10:00:00Zjunk", "2026-11-26T25:00:00Z"}) {
    auto r = ParseTime(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Status::Code::kInvalid);
    }
  }
}

TEST(Uuid, V7IsWellFormedTimeOrderedAndUnique) {
  std::set<std::string> seen;
  std::string prev;
  for (int i = 0; i < 1000; ++i) {
    std::string u = NewUuidV7();
    ASSERT_EQ(u.size(), 36u);
    EXPECT_EQ(u[14], '7');
    EXPECT_TRUE(u[19] == '8' || u[19] == '9' || u[19] == 'a' || u[19] == 'b');
    EXPECT_TRUE(seen.insert(u).second);
    EXPECT_GE(u.substr(0, 13), prev.substr(0, std::min<size_t>(13, prev.size())));
    prev = u;
  }
}

TEST(Uuid, PlusAndOffsetAreInversesAndKeepAValidV7) {
  for (int round = 0; round < 200; ++round) {
    const std::string u = NewUuidV7();
    ASSERT_TRUE(IsCanonicalUuid(u)) << u;
    for (uint64_t k : {0ull, 1ull, 15ull, 16ull, 255ull, 4096ull, 1000000ull, 1ull << 40}) {
      const std::string v = UuidPlus(u, k);
      ASSERT_TRUE(IsCanonicalUuid(v)) << v;
      EXPECT_EQ(v.substr(0, 15), u.substr(0, 15)) << "time and version unchanged: " << v;
      EXPECT_TRUE(v[19] == '8' || v[19] == '9') << "variant unchanged: " << v;
      EXPECT_EQ(UuidOffset(u, v), k) << u << " " << v;
      if (k > 0) {
        EXPECT_GT(v, u) << "text order is numeric order";
        EXPECT_FALSE(UuidOffset(v, u).has_value());
      }
    }
  }
  // Carries across hex digits and dash positions.
  EXPECT_EQ(UuidPlus("018f0000-0000-7000-8000-00000000ffff", 1),
            "018f0000-0000-7000-8000-000000010000");
  EXPECT_EQ(UuidPlus("018f0000-0000-7000-8fff-ffffffffffff", 1),
            "018f0000-0000-7000-9000-000000000000");
  for (const char* bad :
       {"018F0000-0000-7000-8000-000000000000", "not-a-uuid", "",
        "018f0000000070008000000000000000", "018f0000-0000-7000-8000-00000000000g"}) {
    EXPECT_FALSE(IsCanonicalUuid(bad)) << bad;
    EXPECT_FALSE(UuidOffset(bad, bad).has_value()) << bad;
  }
}

// Ids draw on a per-thread pool of random bytes: threads and forked children must never
// repeat each other's ids.
TEST(Uuid, V7IsUniqueAcrossThreadsAndAFork) {
  (void)NewUuidV7();  // the pool of this thread is filled before the fork
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t child = fork();
  if (child == 0) {
    std::string ids;
    for (int i = 0; i < 50; ++i) ids += NewUuidV7();
    (void)!write(fds[1], ids.data(), ids.size());
    _exit(0);
  }
  close(fds[1]);
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) seen.insert(NewUuidV7().substr(19));
  std::string from_child(50 * 36, '\0');
  size_t got = 0;
  ssize_t n;
  while (got < from_child.size() &&
         (n = read(fds[0], from_child.data() + got, from_child.size() - got)) > 0) {
    got += static_cast<size_t>(n);
  }
  close(fds[0]);
  waitpid(child, nullptr, 0);
  ASSERT_EQ(got, from_child.size());
  for (size_t i = 0; i < got; i += 36) {
    EXPECT_TRUE(seen.insert(from_child.substr(i + 19, 17)).second) << "the child repeated an id";
  }

  std::vector<std::set<std::string>> per_thread(8);
  std::vector<std::thread> threads;
  for (auto& ids : per_thread) {
    threads.emplace_back([&ids] {
      for (int i = 0; i < 2000; ++i) ids.insert(NewUuidV7());
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> all;
  for (const auto& ids : per_thread) all.insert(ids.begin(), ids.end());
  EXPECT_EQ(all.size(), 8u * 2000u);
}

TEST(CommitId, IsSha256OverStreamEntityAndIds) {
  // sha256("orders\0order-1\0a\0b\0")
  EXPECT_EQ(CommitId("orders", "order-1", {"a", "b"}).size(), 64u);
  EXPECT_EQ(CommitId("orders", "order-1", {"a", "b"}), CommitId("orders", "order-1", {"a", "b"}));
  EXPECT_NE(CommitId("orders", "order-1", {"a", "b"}), CommitId("orders", "order-1", {"b", "a"}));
  EXPECT_NE(CommitId("orders", "order-1", {"ab"}), CommitId("orders", "order-1", {"a", "b"}));
  EXPECT_EQ(CommitId("", "", {}),
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7");  // sha256("\0\0")
}

TEST(CloudEvent, CarriesTheDesignAttributes) {
  StoredEvent e;
  e.id = "e1";
  e.stream = "orders";
  e.entity = "order-42";
  e.type = "OrderPaid";
  e.source = "/namespaces/shop/services/orders";
  e.data = {{"amount", 12.5}};
  e.metadata = {{"correlationid", "c1"}};
  e.version = 5;
  e.position = 1042;
  e.index = 0;
  e.time = 1795687200123456;
  e.state = "paid";
  Json j = ToCloudEvent(e);
  EXPECT_EQ(j["specversion"], "1.0");
  EXPECT_EQ(j["subject"], "order-42");
  EXPECT_EQ(j["time"], "2026-11-26T10:00:00.123456Z");
  EXPECT_EQ(j["datacontenttype"], "application/json");
  EXPECT_EQ(j["sidelogversion"], 5);
  EXPECT_EQ(j["sidelogposition"], 1042);
  EXPECT_EQ(j["sidelogindex"], 0);
  EXPECT_EQ(j["sidelogstate"], "paid");
  EXPECT_EQ(j["correlationid"], "c1");

  auto back = FromCloudEvent(j);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->id, e.id);
  EXPECT_EQ(back->entity, e.entity);
  EXPECT_EQ(back->data, e.data);
  EXPECT_EQ(back->metadata, e.metadata);
  EXPECT_EQ(back->version, 5);
  EXPECT_EQ(back->position, 1042);
  EXPECT_EQ(back->time, e.time);
  EXPECT_EQ(back->state, "paid");
}

TEST(CloudEvent, PublishedFormHasNoPosition) {
  StoredEvent e;
  e.id = "e1";
  e.stream = "orders";
  e.entity = "o";
  e.type = "T";
  e.source = "/s";
  e.version = 1;
  Json j = ToCloudEvent(e);
  EXPECT_FALSE(j.contains("sidelogposition"));
  auto back = FromCloudEvent(j);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->position, 0);
}

TEST(CloudEvent, RejectsMalformedEnvelopes) {
  EXPECT_FALSE(FromCloudEvent(Json::array()).ok());
  EXPECT_FALSE(FromCloudEvent(Json::parse(R"({"specversion":"1.0"})")).ok());
  auto bad_ext = Json::parse(
      R"({"specversion":"1.0","id":"a","source":"/s","type":"T","subject":"e","time":"2026-11-26T10:00:00Z","sidelogstream":"s","sidelogversion":1,"x":1})");
  auto r = FromCloudEvent(bad_ext);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("\"x\""), std::string::npos);
}

TEST(EventInput, ValidationNamesTheEventAndRule) {
  EventInput e;
  e.type = "9bad";
  auto s = ValidateEventInput(e, "events[3]");
  EXPECT_EQ(s.code(), Status::Code::kInvalid);
  EXPECT_EQ(s.message().rfind("events[3]: ", 0), 0u);
  EXPECT_EQ(s.context().rule, "eventType.start");
  e.type = "Ok";
  e.metadata["Bad-Key"] = "v";
  EXPECT_EQ(ValidateEventInput(e, "events[0]").context().rule, "metadata.keyCharset");
}

TEST(CanonicalContent, IgnoresKeyOrder) {
  EXPECT_EQ(CanonicalContent("T", Json::parse(R"({"a":1,"b":2})"), {}),
            CanonicalContent("T", Json::parse(R"({"b":2,"a":1})"), {}));
  EXPECT_NE(CanonicalContent("T", Json::parse(R"({"a":1})"), {}),
            CanonicalContent("T", Json::parse(R"({"a":2})"), {}));
  EXPECT_NE(CanonicalContent("T", Json::object(), {{"k", "v"}}),
            CanonicalContent("T", Json::object(), {}));
}

}  // namespace
}  // namespace sidelog
