// Shared by the replication tests: the streams they configure, appends, and dumps of a
// replica's log and of JetStream's content to compare.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "nats_server.h"
#include "raw_http.h"
#include "sidecar_process.h"
#include "sidelog/jetstream.h"

namespace sidelog::testing {

constexpr const char* kOrders = "streams:\n  - name: orders\n    access: write\n";
constexpr const char* kOrdersRead = "streams:\n  - name: orders\n    access: read\n";

// A nats-server and two replicas, a and b, of the service that writes orders: all started.
struct OrdersReplicas {
  OrdersReplicas() {
    nats.Start();
    a.Start();
    b.Start();
  }
  NatsServer nats;
  SidecarProcess a{kOrders, nats.SidecarConfig(), "orders"};
  SidecarProcess b{kOrders, nats.SidecarConfig(), "orders"};
};

inline Json Events(const std::string& id, int i) {
  return {{"events", Json::array({{{"id", id}, {"type", "Bumped"}, {"data", {{"i", i}}}}})}};
}

inline RawResponse Append(const SidecarProcess& p, const std::string& entity, const Json& body) {
  return RawRequest(p.port(), "POST", "/v1/streams/orders/entities/" + entity + "/events",
                    body.dump());
}

// Every event of the stream as `position.index entity version id`, read up to `until`.
inline std::vector<std::string> Dump(const SidecarProcess& p, int64_t until) {
  std::vector<std::string> out;
  // Wait (bounded) until the replica's watermark reached `until`: after a failover, a follower
  // whose consumer died with its server is replaced within seconds.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    auto s = RawRequest(p.port(), "GET", "/v1/streams").json();
    if (s["streams"][0]["watermark"].get<int64_t>() >= until ||
        std::chrono::steady_clock::now() > deadline) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  int64_t from = 0;
  for (;;) {
    auto page = RawRequest(p.port(), "GET",
                           "/v1/streams/orders/events?limit=1000&from=" + std::to_string(from))
                    .json();
    if (!page.is_object() || page["events"].empty()) break;
    for (const auto& e : page["events"]) {
      out.push_back(std::to_string(e["sidelogposition"].get<int64_t>()) + "." +
                    std::to_string(e["sidelogindex"].get<int>()) + " " +
                    e["subject"].get<std::string>() + " v" +
                    std::to_string(e["sidelogversion"].get<int64_t>()) + " " +
                    e["id"].get<std::string>() + " " + e["data"].dump());
    }
    from = page["next"];
  }
  return out;
}

// Where two dumps part: their sizes and the first entries that differ, for a failure message
// that shows the difference instead of the first equal lines.
inline std::string DumpDifference(const std::vector<std::string>& a,
                                  const std::vector<std::string>& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  if (i == a.size() && i == b.size()) return "equal";
  auto at = [i](const std::vector<std::string>& d) {
    std::string out;
    for (size_t k = i; k < d.size() && k < i + 3; ++k) out += "\n    " + d[k];
    return out.empty() ? std::string("\n    (ends)") : out;
  };
  return "sizes " + std::to_string(a.size()) + " and " + std::to_string(b.size()) +
         "; first difference at entry " + std::to_string(i) + ":\n  first:" + at(a) +
         "\n  second:" + at(b);
}

// A sidecar's log without its per-request lines, except failed ones (status >= 500).
inline std::string EventsOfLog(const SidecarProcess& p, size_t max_chars = 6000) {
  std::string out, line;
  std::istringstream in(p.Log());
  while (std::getline(in, line)) {
    if (line.find("\"msg\":\"request\"") == std::string::npos ||
        line.find("\"status\":5") != std::string::npos) {
      out += line + "\n";
    }
  }
  return out.size() > max_chars ? "..." + out.substr(out.size() - max_chars) : out;
}

// A connection to `url` and SIDELOG_it_orders's info, retried for up to 15 s: right after a
// cluster node is killed, stream info can time out until a new stream leader is elected.
struct OrdersStream {
  std::unique_ptr<JetStream> js;
  uint64_t last_seq = 0;
};
inline std::optional<OrdersStream> ConnectOrdersStream(const std::string& url) {
  NatsConfig c;
  c.url = url;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  do {
    auto js = JetStream::Connect(c, nullptr);
    if (js.ok()) {
      auto info = (*js)->Info("SIDELOG_it_orders");
      if (info.ok()) return OrdersStream{std::move(js).value(), info->last_seq};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  } while (std::chrono::steady_clock::now() < deadline);
  return std::nullopt;
}

inline int64_t JetStreamLastSeq(const std::string& url) {
  auto stream = ConnectOrdersStream(url);
  return stream ? static_cast<int64_t>(stream->last_seq) : -1;
}
inline int64_t JetStreamLastSeq(const NatsServer& nats) { return JetStreamLastSeq(nats.url()); }

// The event ids of every commit JetStream holds in SIDELOG_it_orders, in stream order (read
// with an ordered consumer). Right after a cluster node is killed, creating the consumer or
// reading can fail until the stream has a new leader: each attempt gets 10 s, all of them 40 s.
inline std::vector<std::string> JetStreamEventIds(const std::string& url) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(40);
  std::vector<std::string> ids;
  while (std::chrono::steady_clock::now() < give_up) {
    auto stream = ConnectOrdersStream(url);
    if (!stream) continue;
    std::mutex mu;
    uint64_t seen = 0;
    ids.clear();
    auto follower =
        stream->js->Follow("SIDELOG_it_orders", "sidelog.it.orders.>", 1, [&](JetStreamMessage m) {
          auto batch = Json::parse(m.data, nullptr, false);
          std::lock_guard<std::mutex> lock(mu);
          if (batch.is_array()) {
            for (const auto& e : batch) ids.push_back(e.value("id", ""));
          }
          seen = m.seq;
        });
    if (!follower.ok()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    bool complete = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!complete && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      std::lock_guard<std::mutex> lock(mu);
      complete = seen >= stream->last_seq;
    }
    (*follower).reset();  // unsubscribe before reading
    if (complete) return ids;
  }
  return ids;
}

}  // namespace sidelog::testing
