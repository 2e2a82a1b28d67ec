// A scripted history of the shop (examples/shop): customers register and get renamed; orders
// are created with items, get more items, are paid, shipped, cancelled or deleted. Generated
// from a seed, appended to a sidecar, and folded by a reference fold written here in plain C++,
// so a test can compare the consolidator's tables with what they must hold.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "client.h"
#include "sidelog/event.h"

namespace sidelog::testing {

// One commit: 1..N events for one entity.
struct Append {
  std::string stream;
  std::string entity;
  std::vector<std::pair<std::string, Json>> events;  // type, data
};

struct OrderRow {
  std::string customer_id;
  std::optional<std::string> customer_name;
  std::string status;
  double total = 0;
  int64_t items = 0;
};

class ShopHistory {
 public:
  // About `events` events over both streams.
  ShopHistory(uint32_t seed, int events) {
    std::mt19937 rng(seed);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
    auto price = [&] { return 1 + pick(50) + 0.5; };  // halves: sums stay exact in a double
    int count = 0;
    auto add = [&](Append a) {
      count += static_cast<int>(a.events.size());
      Apply(a);
      appends_.push_back(std::move(a));
    };
    while (count < events) {
      int action = pick(100);
      if (action < 6 || customers_.size() < 5) {
        std::string id = "c" + std::to_string(customers_.size());
        add({"customers",
             id,
             {{"CustomerRegistered", {{"name", "Name-" + std::to_string(pick(1000))}}}}});
      } else if (action < 14) {
        std::string id = "c" + std::to_string(pick(static_cast<int>(customers_.size())));
        add({"customers",
             id,
             {{"CustomerRenamed", {{"name", "Renamed-" + std::to_string(pick(1000))}}}}});
      } else if (action < 34) {
        std::string id = "o" + std::to_string(next_order_++);
        // Now and then a customer that never registers: its orders keep a NULL name.
        std::string customer =
            pick(20) == 0 ? "ghost" + std::to_string(pick(3))
                          : "c" + std::to_string(pick(static_cast<int>(customers_.size()) + 3));
        Append a{"orders", id, {{"OrderCreated", {{"customerId", customer}}}}};
        for (int i = pick(3); i > 0; --i) {
          a.events.push_back(
              {"ItemAdded",
               {{"item", {{"sku", "s" + std::to_string(pick(9))}, {"price", price()}}}}});
        }
        add(std::move(a));
      } else {
        auto open = OrdersIn({"created", "paid"});
        if (open.empty()) continue;
        const std::string id = open[static_cast<size_t>(pick(static_cast<int>(open.size())))];
        const std::string status = orders_.at(id).status;
        if (action < 60 && status == "created") {
          add({"orders", id, {{"ItemAdded", {{"item", {{"sku", "x"}, {"price", price()}}}}}}});
        } else if (action < 75 && status == "created") {
          add({"orders", id, {{"OrderPaid", {{"amount", orders_.at(id).total}}}}});
        } else if (action < 88 && status == "paid") {
          add({"orders", id, {{"OrderShipped", Json::object()}}});
        } else if (action < 95) {
          add({"orders", id, {{"OrderCancelled", {{"reason", "changed mind"}}}}});
        } else {
          add({"orders", id, {{"OrderDeleted", Json::object()}}});
        }
      }
    }
  }

  const std::vector<Append>& appends() const { return appends_; }

  int64_t EventsIn(const std::string& stream) const {
    int64_t n = 0;
    for (const auto& a : appends_) {
      if (a.stream == stream) n += static_cast<int64_t>(a.events.size());
    }
    return n;
  }

  // The reference fold: the rows `orders` must hold once every event is folded.
  std::map<std::string, OrderRow> ExpectedOrders() const {
    std::map<std::string, OrderRow> out;
    for (const auto& [id, o] : orders_) {
      if (o.deleted) continue;
      OrderRow row = o;
      auto c = customers_.find(o.customer_id);
      if (c != customers_.end()) row.customer_name = c->second;
      out[id] = row;
    }
    return out;
  }
  std::map<std::string, std::string> ExpectedCustomers() const { return customers_; }

 private:
  struct Order : OrderRow {
    bool deleted = false;
  };

  std::vector<std::string> OrdersIn(std::initializer_list<const char*> states) const {
    std::vector<std::string> out;
    for (const auto& [id, o] : orders_) {
      if (o.deleted) continue;
      for (const char* s : states) {
        if (o.status == s) out.push_back(id);
      }
    }
    return out;
  }

  void Apply(const Append& a) {
    for (const auto& [type, data] : a.events) {
      if (type == "CustomerRegistered" || type == "CustomerRenamed") {
        customers_[a.entity] = data["name"].get<std::string>();
      } else if (type == "OrderCreated") {
        Order o;
        o.customer_id = data["customerId"].get<std::string>();
        o.status = "created";
        orders_[a.entity] = o;
      } else if (type == "ItemAdded") {
        orders_[a.entity].total += data["item"]["price"].get<double>();
        orders_[a.entity].items += 1;
      } else if (type == "OrderPaid") {
        orders_[a.entity].status = "paid";
      } else if (type == "OrderShipped") {
        orders_[a.entity].status = "shipped";
      } else if (type == "OrderCancelled") {
        orders_[a.entity].status = "cancelled";
      } else if (type == "OrderDeleted") {
        orders_[a.entity].deleted = true;
      }
    }
  }

  std::vector<Append> appends_;
  std::map<std::string, Order> orders_;
  std::map<std::string, std::string> customers_;
  int next_order_ = 0;
};

// Appends `appends` to the sidecar with `threads` writers; each entity's commits stay in order
// (an entity always goes to the same writer). `pause` runs between a writer's appends.
// Returns false (with a test failure) when an append fails.
inline bool AppendAll(const std::string& sidecar_url, const std::vector<Append>& appends,
                      int threads = 4, std::chrono::microseconds pause = {}) {
  std::atomic<bool> ok{true};
  std::vector<std::thread> writers;
  writers.reserve(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    writers.emplace_back([&, t] {
      cli::Client client(sidecar_url);
      for (const auto& a : appends) {
        if (std::hash<std::string>{}(a.entity) % static_cast<size_t>(threads) !=
            static_cast<size_t>(t)) {
          continue;
        }
        Json events = Json::array();
        for (const auto& [type, data] : a.events) {
          events.push_back({{"id", NewUuidV7()}, {"type", type}, {"data", data}});
        }
        std::string error;
        auto r =
            client.Send("POST", "/v1/streams/" + a.stream + "/entities/" + a.entity + "/events",
                        {{"events", events}}, {}, &error);
        if (r.status != 201) {
          ADD_FAILURE() << "append to " << a.stream << "/" << a.entity << ": "
                        << (r.status ? cli::ProblemText(r) : error);
          ok = false;
          return;
        }
        if (pause.count() > 0) std::this_thread::sleep_for(pause);
      }
    });
  }
  for (auto& w : writers) w.join();
  return ok;
}

}  // namespace sidelog::testing
