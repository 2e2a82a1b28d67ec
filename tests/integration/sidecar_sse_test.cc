// Live subscriptions over Server-Sent Events.
#include <gtest/gtest.h>

#include <thread>

#include "raw_http.h"
#include "sidecar_process.h"

namespace sidelog::testing {
namespace {

struct Seen {
  std::vector<std::string> ids;
  std::vector<std::string> entities;
};

// Follows the stream in a thread until `count` events arrived or 10 s passed.
std::thread Follow(const std::string& url, const std::string& query, const std::string& last_id,
                   size_t count, Seen* out) {
  return std::thread([=] {
    cli::Client client(url);
    auto start = std::chrono::steady_clock::now();
    auto in_time = [start] {
      return std::chrono::steady_clock::now() - start < std::chrono::seconds(20);
    };
    client.Follow(
        "/v1/streams/orders/events?follow=true" + query, last_id,
        [&](const std::string& id, const std::string&, const Json& e) {
          out->ids.push_back(id);
          out->entities.push_back(e.value("subject", ""));
          return out->ids.size() < count && in_time();
        },
        in_time);  // heartbeats (300 ms in tests) let a quiet stream time out
  });
}

void AppendN(const std::string& url, const std::string& entity, int n) {
  cli::Client client(url);
  for (int i = 0; i < n; ++i) {
    Json body = {{"events", Json::array({{{"type", "ItemAdded"}, {"data", {{"item", i}}}},
                                         {{"type", "ItemAdded"}, {"data", {{"item", -i}}}}})}};
    ASSERT_EQ(client.Send("POST", "/v1/streams/orders/entities/" + entity + "/events", body).status,
              201);
  }
}

TEST(SidecarSse, DeliversEveryEventInOrderToTwoSubscribers) {
  SidecarProcess proc;
  proc.Start();
  AppendN(proc.url(), "before", 3);  // 6 events already there
  Seen a, b;
  auto ta = Follow(proc.url(), "&from=0", "", 26, &a);
  auto tb = Follow(proc.url(), "&from=0", "", 26, &b);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  AppendN(proc.url(), "live", 10);  // 20 more, live
  ta.join();
  tb.join();
  ASSERT_EQ(a.ids.size(), 26u);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.ids.front(), "1.0");
  EXPECT_EQ(a.ids[1], "1.1");
  EXPECT_EQ(a.ids.back(), "13.1");
  for (size_t i = 1; i < a.ids.size(); ++i) {
    auto pos = [](const std::string& id) { return std::stod(id); };
    EXPECT_LT(pos(a.ids[i - 1]), pos(a.ids[i]));
  }
}

TEST(SidecarSse, ResumesRightAfterLastEventId) {
  SidecarProcess proc;
  proc.Start();
  AppendN(proc.url(), "r", 4);  // positions 1..4, two events each
  Seen s;
  auto t = Follow(proc.url(), "&from=0", "2.0", 5, &s);  // Last-Event-ID wins over from
  t.join();
  EXPECT_EQ(s.ids, (std::vector<std::string>{"2.1", "3.0", "3.1", "4.0", "4.1"}));
}

TEST(SidecarSse, BadLastEventIdIsRefused) {
  SidecarProcess proc;
  proc.Start();
  auto r = RawRequest(proc.port(), "GET", "/v1/streams/orders/events?follow=true", "",
                      {{"Last-Event-ID", "abc"}});
  EXPECT_EQ(r.status, 400);
}

TEST(SidecarSse, DisconnectedSubscribersAreRemovedAndAppendsNeverWait) {
  SidecarProcess proc;
  proc.Start();
  AppendN(proc.url(), "d", 1);
  // A raw client that reads the first event and then closes its socket.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(proc.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::string req = "GET /v1/streams/orders/events?follow=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  ASSERT_EQ(send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  std::string got;
  char buf[4096];
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (got.find("id: 1.1") == std::string::npos) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0) << got;
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_NE(got.find("text/event-stream"), std::string::npos);
  auto gauge = [&] {
    auto m = RawRequest(proc.health_port(), "GET", "/metrics").body;
    auto at = m.find("\nsidelog_sse_subscribers ");
    return at == std::string::npos ? -1 : std::stoi(m.substr(at + 25));
  };
  EXPECT_EQ(gauge(), 1);
  close(fd);
  // Heartbeats (300 ms in tests) find the closed connection.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (gauge() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(gauge(), 0);
  AppendN(proc.url(), "d", 5);
}

TEST(SidecarSse, TypeFilterNarrowsTheSubscription) {
  SidecarProcess proc;
  proc.Start();
  cli::Client client(proc.url());
  for (const char* type : {"Created", "ItemAdded", "ItemAdded"}) {
    Json data = std::string(type) == "Created" ? Json{{"customerId", "c"}} : Json{{"item", 1}};
    Json body = {{"events", Json::array({{{"type", type}, {"data", data}}})}};
    ASSERT_EQ(client.Send("POST", "/v1/streams/orders/entities/tf/events", body).status, 201);
  }
  Seen s;
  auto t = Follow(proc.url(), "&types=ItemAdded", "", 2, &s);
  t.join();
  EXPECT_EQ(s.ids, (std::vector<std::string>{"2.0", "3.0"}));
}

}  // namespace
}  // namespace sidelog::testing
