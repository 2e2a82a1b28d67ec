// Replication lag: appends to sidecar A at a steady rate, and for each commit the time from A's
// 201 to the commit's arrival over SSE at sidecar B (another replica, following the stream).
//
//   replication_lag A_URL B_URL STREAM EVENTS_PER_S EVENTS_PER_APPEND SECONDS
//
// Prints: RESULT <commits measured> <p50 ms> <p99 ms> <max ms> <achieved events/s>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client.h"

namespace {

using Clock = std::chrono::steady_clock;

// Follows B's SSE stream after `watermark` and records when each event id arrives, until `done`.
void FollowRaw(const std::string& url, const std::string& stream, int64_t watermark,
               std::atomic<bool>* done, std::mutex* mu,
               std::map<std::string, Clock::time_point>* received) {
  const int port = std::atoi(url.substr(url.rfind(':') + 1).c_str());
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
  timeval tv{0, 200000};  // wake up to look at `done`
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string req =
      "GET /v1/streams/" + stream +
      "/events?follow=true HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
      "\r\nAccept: text/event-stream\r\nLast-Event-ID: " + std::to_string(watermark) +
      ".999999\r\n\r\n";
  send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string buf;
  char chunk[65536];
  while (!*done) {
    ssize_t n = recv(fd, chunk, sizeof chunk, 0);
    if (n == 0) break;
    if (n < 0) continue;  // timeout
    const auto now = Clock::now();
    buf.append(chunk, static_cast<size_t>(n));
    size_t start = 0, eol;
    while ((eol = buf.find('\n', start)) != std::string::npos) {
      if (buf.compare(start, 5, "data:") == 0) {
        auto j = nlohmann::json::parse(buf.begin() + static_cast<long>(start) + 5,
                                       buf.begin() + static_cast<long>(eol), nullptr, false);
        if (j.is_object()) {
          std::lock_guard<std::mutex> lock(*mu);
          received->emplace(j.value("id", ""), now);
        }
      }
      start = eol + 1;
    }
    buf.erase(0, start);
  }
  close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(
        stderr,
        "usage: replication_lag A_URL B_URL STREAM EVENTS_PER_S EVENTS_PER_APPEND SECONDS\n");
    return 2;
  }
  const std::string a_url = argv[1], b_url = argv[2], stream = argv[3];
  const double rate = std::atof(argv[4]);
  const int per_append = std::atoi(argv[5]);
  const double seconds = std::atof(argv[6]);
  const int senders = 4;
  using sidelog::cli::Client;
  using Json = nlohmann::json;

  // Follow B from its current watermark on.
  Client b(b_url);
  auto streams = b.Send("GET", "/v1/streams");
  int64_t watermark = 0;
  for (const auto& s : streams.body["streams"]) {
    if (s.value("name", "") == stream) watermark = s.value("watermark", int64_t{0});
  }
  std::mutex mu;
  std::map<std::string, Clock::time_point> acked, received;
  std::atomic<bool> done{false};
  // A plain socket reader: the measuring client must keep up with 5,000 events/s on two cores.
  std::thread follower([&] { FollowRaw(b_url, stream, watermark, &done, &mu, &received); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  const std::string run =
      std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  const auto interval = std::chrono::duration<double>(senders * per_append / rate);
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::atomic<long> events{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < senders; ++t) {
    threads.emplace_back([&, t] {
      Client a(a_url);
      auto next = start + std::chrono::duration_cast<Clock::duration>(interval * t / senders);
      for (long n = 0; Clock::now() < end; ++n) {
        std::this_thread::sleep_until(next);
        next += std::chrono::duration_cast<Clock::duration>(interval);
        const std::string first = run + "-" + std::to_string(t) + "-" + std::to_string(n);
        Json list = Json::array();
        for (int i = 0; i < per_append; ++i) {
          list.push_back({{"id", i == 0 ? first : first + "." + std::to_string(i)},
                          {"type", "PaymentReceived"},
                          {"data", {{"amount", 12.5}, {"currency", "EUR"}}}});
        }
        auto r = a.Send("POST",
                        "/v1/streams/" + stream + "/entities/lag-" + std::to_string(t) + "-" +
                            std::to_string(n % 16) + "/events",
                        Json{{"events", list}});
        auto now = Clock::now();
        if (r.status == 201) {
          events += per_append;
          std::lock_guard<std::mutex> lock(mu);
          acked.emplace(first, now);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the last deliveries
  done = true;
  follower.join();

  std::vector<double> lags;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [id, at] : acked) {
      auto it = received.find(id);
      if (it == received.end()) continue;
      // Negative when B delivered the commit before A's 201 reached the client.
      lags.push_back(std::chrono::duration<double, std::milli>(it->second - at).count());
    }
  }
  std::sort(lags.begin(), lags.end());
  auto pct = [&](double p) {
    return lags.empty() ? 0.0 : lags[static_cast<size_t>(p * (lags.size() - 1))];
  };
  std::printf("RESULT %zu %.3f %.3f %.3f %.0f\n", lags.size(), pct(0.5), pct(0.99),
              lags.empty() ? 0.0 : lags.back(), static_cast<double>(events) / elapsed);
  return lags.size() == acked.size() ? 0 : 1;
}
