// A test app that receives push deliveries from a sidecar: a real HTTP server on a loopback
// port that keeps its own books (what it acknowledged, how often, in which order) and fails on
// command (a share of random 500s, "poison" events, slow answers, or not listening at all).
#pragma once

#include <cpprest/http_listener.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "sidecar_process.h"
#include "sidelog/event.h"

namespace sidelog::testing {

struct Delivery {
  std::string id, entity, type, subscription, content_type;
  int64_t version = 0, position = 0;
  int attempt = 0;
  int answered = 0;  // the status the app answered
  Json data;
};

class TestApp {
 public:
  // What to answer a delivery; 0: the default (204, or a random 500 at `fail_rate`).
  using Answer = std::function<int(const Delivery&)>;

  TestApp() : port_(FreePort()) {}
  ~TestApp() { Close(); }

  void Open() {
    listener_ = std::make_unique<web::http::experimental::listener::http_listener>(
        web::uri("http://127.0.0.1:" + std::to_string(port_)));
    listener_->support([this](const web::http::http_request& r) { Handle(r); });
    listener_->open().wait();
  }
  void Close() {
    if (listener_) listener_->close().wait();
    listener_.reset();
  }

  int port() const { return port_; }
  void set_fail_rate(double r) { fail_rate_ = r; }
  void set_delay(std::chrono::milliseconds d) { delay_ms_ = static_cast<int>(d.count()); }
  void set_answer(Answer a) {
    std::lock_guard<std::mutex> lock(mu_);
    answer_ = std::move(a);
  }
  // The JSON body of 200 answers ({"status": ...}); empty: answer 204.
  void set_status_body(std::string s) {
    std::lock_guard<std::mutex> lock(mu_);
    status_body_ = std::move(s);
  }

  std::vector<Delivery> deliveries() const {
    std::lock_guard<std::mutex> lock(mu_);
    return all_;
  }
  // Event ids answered 2xx, with how many times.
  std::map<std::string, int> acked() const {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_;
  }
  size_t acked_distinct() const {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_.size();
  }
  // Deliveries that came before an earlier version of the same entity was acknowledged
  // (excluding versions in `parked_ok`, which may be skipped).
  std::vector<std::string> order_violations() const {
    std::lock_guard<std::mutex> lock(mu_);
    return violations_;
  }
  // Versions the sidecar may skip for ordering because it parked them.
  void allow_skip(const std::string& entity, int64_t version) {
    std::lock_guard<std::mutex> lock(mu_);
    skippable_[entity].insert(version);
  }
  // Deliveries of one event concurrently in flight: never more than one.
  int max_concurrent_per_entity() const { return max_concurrent_entity_; }
  int max_concurrent() const { return max_concurrent_; }

 private:
  void Handle(const web::http::http_request& r) {
    Delivery d;
    auto h = [&](const char* name) {
      auto it = r.headers().find(name);
      return it == r.headers().end() ? std::string() : it->second;
    };
    d.content_type = h("Content-Type");
    d.subscription = h("Sidelog-Subscription");
    d.attempt = std::atoi(h("Sidelog-Delivery-Attempt").c_str());
    std::string body = web::http::http_request(r).extract_string(true).get();
    if (d.content_type.rfind("application/cloudevents+json", 0) == 0) {
      Json ce = Json::parse(body, nullptr, false);
      d.id = ce.value("id", "");
      d.entity = ce.value("subject", "");
      d.type = ce.value("type", "");
      d.version = ce.value("sidelogversion", int64_t{0});
      d.position = ce.value("sidelogposition", int64_t{0});
      d.data = ce.contains("data") ? ce["data"] : Json();
    } else {
      d.id = h("ce-id");
      d.entity = h("ce-subject");
      d.type = h("ce-type");
      d.version = std::atoll(h("ce-sidelogversion").c_str());
      d.position = std::atoll(h("ce-sidelogposition").c_str());
      d.data = body.empty() ? Json() : Json::parse(body, nullptr, false);
    }
    int in_flight = ++concurrent_;
    int entity_in_flight;
    {
      std::lock_guard<std::mutex> lock(mu_);
      entity_in_flight = ++entity_concurrent_[d.entity];
      // Every earlier version of the entity must have been acknowledged (or parked) first.
      auto& done = acked_versions_[d.entity];
      for (int64_t v = 1; v < d.version; ++v) {
        if (!done.count(v) && !skippable_[d.entity].count(v)) {
          violations_.push_back(d.entity + " v" + std::to_string(d.version) + " before v" +
                                std::to_string(v));
          break;
        }
      }
    }
    max_concurrent_ = std::max(max_concurrent_.load(), in_flight);
    max_concurrent_entity_ = std::max(max_concurrent_entity_.load(), entity_in_flight);
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    int code = 0;
    std::string status_body;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (answer_) code = answer_(d);
      if (code == 0) {
        std::uniform_real_distribution<double> u(0, 1);
        code = u(rng_) < fail_rate_ ? 500 : (status_body_.empty() ? 204 : 200);
      }
      status_body = code == 200 ? status_body_ : "";
      d.answered = code;
      const bool ok = code >= 200 && code < 300 && status_body.find("RETRY") == std::string::npos &&
                      status_body.find("DROP") == std::string::npos;
      if (ok) {
        ++acked_[d.id];
        acked_versions_[d.entity].insert(d.version);
      }
      --entity_concurrent_[d.entity];
      all_.push_back(d);
    }
    --concurrent_;
    web::http::http_response resp(static_cast<web::http::status_code>(code));
    if (!status_body.empty()) resp.set_body(status_body, "application/json");
    web::http::http_request(r).reply(resp).then([](pplx::task<void> t) {
      try {
        t.get();
      } catch (...) {
      }
    });
  }

  int port_;
  std::unique_ptr<web::http::experimental::listener::http_listener> listener_;
  std::atomic<double> fail_rate_{0};
  std::atomic<int> delay_ms_{0};
  std::atomic<int> concurrent_{0}, max_concurrent_{0}, max_concurrent_entity_{0};
  mutable std::mutex mu_;
  Answer answer_;
  std::string status_body_;
  std::mt19937 rng_{12345};
  std::vector<Delivery> all_;
  std::map<std::string, int> acked_;
  std::map<std::string, std::set<int64_t>> acked_versions_, skippable_;
  std::map<std::string, int> entity_concurrent_;
  std::vector<std::string> violations_;
};

// Waits (at most `limit`) for `condition`; true when it held.
inline bool WaitFor(const std::function<bool()>& condition,
                    std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}

// The value of one metric series in a /metrics text ("name{labels}"), or -1.
inline double MetricValue(const std::string& text, const std::string& series) {
  size_t pos = 0;
  while ((pos = text.find(series + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') return std::atof(text.c_str() + pos + series.size());
    pos += series.size();
  }
  return -1;
}

}  // namespace sidelog::testing
