#include "delivery.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "app_client.h"
#include "sidelog/jetstream.h"
#include "sidelog/log.h"
#include "sidelog/names.h"

namespace sidelog::sidecar {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kWindow = 4096;  // events read ahead of the oldest one not done
constexpr int kPage = 512;        // events per read of the log
// group: service over NATS: commits held from the durable consumer at most (its
// max_ack_pending), its ack wait, and how often held commits are reported in progress.
constexpr int kMaxHeld = 2048;
constexpr int64_t kAckWaitMs = 10000;
constexpr auto kProgressEvery = std::chrono::seconds(3);

enum class Outcome { kDone, kRetry, kPark, kAppDown };

const char* GroupName(DeliverGroup g) { return g == DeliverGroup::kPod ? "pod" : "service"; }
const char* OrderingName(DeliverOrdering o) {
  return o == DeliverOrdering::kNone ? "none" : "entity";
}

// A header value as the CloudEvents HTTP binding spells it: printable ASCII as is, the rest
// (and '%' and '"') percent-encoded as UTF-8 bytes.
std::string HeaderValue(const std::string& v) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(v.size());
  for (unsigned char c : v) {
    if (c >= 0x20 && c < 0x7f && c != '%' && c != '"') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string BuildRequest(const DeliverConfig& d, const std::string& authority,
                         const std::string& subscription, const StoredEvent& e, int attempt) {
  std::string body, content_type;
  std::string head = "POST " + d.path + " HTTP/1.1\r\nHost: " + authority +
                     "\r\nUser-Agent: sidelog-sidecar\r\nSidelog-Subscription: " + subscription +
                     "\r\nSidelog-Delivery-Attempt: " + std::to_string(attempt) + "\r\n";
  if (d.mode == CloudEventsMode::kStructured) {
    body = ToCloudEvent(e).dump(-1, ' ', false, Json::error_handler_t::replace);
    content_type = "application/cloudevents+json; charset=utf-8";
  } else {
    auto add = [&](const std::string& name, const std::string& value) {
      head += "ce-" + name + ": " + HeaderValue(value) + "\r\n";
    };
    add("specversion", "1.0");
    add("id", e.id);
    add("source", e.source);
    add("type", e.type);
    add("subject", e.entity);
    add("time", FormatTime(e.time));
    add("sidelogstream", e.stream);
    add("sidelogposition", std::to_string(e.position));
    add("sidelogindex", std::to_string(e.index));
    add("sidelogversion", std::to_string(e.version));
    if (!e.state.empty()) add("sidelogstate", e.state);
    for (const auto& [k, v] : e.metadata) add(k, v);
    if (!e.data.is_null()) {
      body = e.data.dump(-1, ' ', false, Json::error_handler_t::replace);
      content_type = "application/json";
    }
  }
  if (!content_type.empty()) head += "Content-Type: " + content_type + "\r\n";
  head += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  return head + body;
}

std::string Snippet(const std::string& body) {
  std::string s = body.substr(0, 200);
  std::replace_if(
      s.begin(), s.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  return s;
}

// What the app's answer means for the event.
Outcome Classify(const AppReply& r, std::string* error, int64_t* retry_after_ms) {
  if (r.status >= 200 && r.status < 300) {
    if (r.body.empty() || r.body.find("status") == std::string::npos) return Outcome::kDone;
    Json j = Json::parse(r.body, nullptr, false);
    if (!j.is_object() || !j.contains("status") || !j["status"].is_string()) return Outcome::kDone;
    const std::string s = Lower(j["status"].get<std::string>());
    if (s == "success") return Outcome::kDone;
    if (s == "drop") {
      *error = "the app answered " + std::to_string(r.status) + " with status DROP";
      return Outcome::kPark;
    }
    *error = "the app answered " + std::to_string(r.status) + " with status " +
             j["status"].get<std::string>().substr(0, 40);
    return Outcome::kRetry;
  }
  *error = "the app answered " + std::to_string(r.status) +
           (r.body.empty() ? std::string() : ": " + Snippet(r.body));
  if (r.status == 429 || r.status >= 500) {
    if (auto it = r.headers.find("retry-after"); it != r.headers.end()) {
      const std::string& v = it->second;
      if (!v.empty() && v.size() < 7 && v.find_first_not_of("0123456789") == std::string::npos) {
        *retry_after_ms = std::stoll(v) * 1000;
      }
    }
    return Outcome::kRetry;
  }
  return Outcome::kPark;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

class Subscription {
 public:
  // `js`: the sidecar's JetStream connection in replicated mode (null standalone). With it,
  // `group: service` shares a durable consumer with the service's other pods.
  Subscription(std::string name, const StreamConfig& stream, DeliverConfig deliver,
               std::string host, int port, EventLog* log, Metrics* metrics,
               SubscriptionStore* store, JetStream* js, std::string ns, const std::string& service)
      : name_(std::move(name)),
        stream_(stream.name),
        types_(stream.types.begin(), stream.types.end()),
        deliver_(std::move(deliver)),
        host_(std::move(host)),
        port_(port),
        log_(log),
        metrics_(metrics),
        store_(store),
        js_(deliver_.group == DeliverGroup::kService ? js : nullptr),
        ns_(std::move(ns)),
        consumer_("sidelog-" + ns_ + "-" + service + "-" + stream_) {
    Labels l = {{"subscription", name_}};
    delivered_ = &metrics_->GetCounter("sidelog_delivery_delivered_total",
                                       "Events the app acknowledged, by subscription.", l);
    retried_ = &metrics_->GetCounter("sidelog_delivery_retries_total",
                                     "Deliveries that failed and will be tried again.", l);
    parked_total_ = &metrics_->GetCounter("sidelog_delivery_parked_total",
                                          "Events parked after maxAttempts or a refusal.", l);
    parked_ = &metrics_->GetGauge("sidelog_delivery_parked", "Events parked now.", l);
    in_flight_gauge_ =
        &metrics_->GetGauge("sidelog_delivery_in_flight", "Deliveries waiting for the app.", l);
    lag_events_ = &metrics_->GetGauge(
        "sidelog_delivery_lag_events",
        "Events of the stream not yet acknowledged or parked (commits not yet read count one).", l);
    lag_seconds_ = &metrics_->GetGauge(
        "sidelog_delivery_lag_seconds",
        "Age of the oldest event not yet acknowledged or parked; 0 when caught up.", l);
    app_up_ = &metrics_->GetGauge("sidelog_delivery_app_up",
                                  "1 while the app accepts deliveries, 0 while it cannot be "
                                  "reached.",
                                  l);
    duration_ = &metrics_->GetHistogram("sidelog_delivery_duration_seconds",
                                        "Time the app took to answer a delivery.", l);
  }

  ~Subscription() { Stop(); }

  const std::string& name() const { return name_; }

  Status Start() {
    auto pos = store_->Load(name_);
    if (!pos.ok()) return pos.status();
    position_ = read_pos_ = pos->position;
    done_above_ = pos->acked;
    identity_ = pos->identity;
    parked_->Set(static_cast<double>(store_->ParkedCount(name_)));
    const std::string now_identity = log_->Identity(stream_);
    if (!identity_.empty() && !now_identity.empty() && identity_ != now_identity) {
      state_ = "reset";
      detail_ = "the stream's identity changed from " + identity_ + " to " + now_identity +
                " (it was recreated): the recorded position belongs to another stream, so "
                "nothing is delivered. Reset the subscription to deliver the new stream from "
                "its start";
      log::Error("SubscriptionReset", {{"subscription", name_}, {"detail", detail_}});
      return Status::Ok();
    }
    subscription_id_ = log_->Subscribe([this](const std::string& stream, int64_t) {
      if (stream != stream_) return;
      std::lock_guard<std::mutex> lock(mu_);
      wake_ = true;
      cv_.notify_all();
    });
    const int workers = deliver_.max_in_flight;
    for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { Work(); });
    scheduler_ = std::thread([this] { Run(); });
    if (js_ != nullptr) fetcher_ = std::thread([this] { FetchLoop(); });
    return Status::Ok();
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      cv_.notify_all();
      jobs_cv_.notify_all();
    }
    if (subscription_id_ != 0) log_->Unsubscribe(subscription_id_);
    if (fetcher_.joinable()) fetcher_.join();
    if (scheduler_.joinable()) scheduler_.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      workers_done_ = true;
      jobs_cv_.notify_all();
    }
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  Json StatusJson() const {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t watermark = log_->Watermark(stream_);
    Json j = {{"name", name_},
              {"stream", stream_},
              {"path", deliver_.path},
              {"port", port_},
              {"group", GroupName(deliver_.group)},
              {"ordering", OrderingName(deliver_.ordering)},
              {"maxInFlight", deliver_.max_in_flight},
              {"state", state_},
              {"position", position_},
              {"watermark", watermark},
              {"inFlight", in_flight_},
              {"pending", main_items_},
              {"lag", LagJson(watermark)},
              {"delivered", static_cast<int64_t>(delivered_->value())},
              {"retried", static_cast<int64_t>(retried_->value())},
              {"parked", static_cast<int64_t>(parked_->value())},
              {"app", {{"up", !app_down_}, {"address", host_ + ":" + std::to_string(port_)}}}};
    if (!detail_.empty()) j["detail"] = detail_;
    if (js_ != nullptr) {
      j["position"] = ack_floor_;
      j["consumer"] = {{"name", consumer_},
                       {"ackFloor", ack_floor_},
                       {"pending", consumer_pending_},
                       {"held", commit_left_.size() + fetched_.size()}};
      if (!nats_detail_.empty()) j["consumer"]["detail"] = nats_detail_;
    }
    if (!last_error_.empty()) {
      j["lastError"] = {{"message", last_error_},
                        {"event", last_error_event_},
                        {"at", FormatTime(last_error_at_)}};
    }
    return j;
  }

  void RefreshGauges() {
    std::lock_guard<std::mutex> lock(mu_);
    Json lag = LagJson(log_->Watermark(stream_));
    lag_events_->Set(lag["events"].get<double>());
    lag_seconds_->Set(lag["seconds"].get<double>());
  }

  // Queues parked events for delivery again; returns how many were queued.
  Result<int> Replay(const std::optional<std::vector<int64_t>>& ids) {
    std::vector<ParkedEvent> parked;
    if (ids) {
      for (int64_t id : *ids) {
        auto p = store_->FindParked(name_, id);
        if (!p.ok()) return p.status();
        if (!p->has_value()) {
          return Status::NotFound("subscription " + name_ + " has no parked event " +
                                  std::to_string(id));
        }
        parked.push_back(**p);
      }
    } else {
      int64_t after = 0;
      for (;;) {
        auto page = store_->Parked(name_, after, 1000);
        if (!page.ok()) return page.status();
        if (page->empty()) break;
        after = page->back().id;
        for (auto& p : *page) parked.push_back(std::move(p));
      }
    }
    std::vector<std::pair<int64_t, std::shared_ptr<const StoredEvent>>> events;
    for (const auto& p : parked) {
      auto e = ReadEvent(p.key);
      if (!e.ok()) return e.status();
      events.emplace_back(p.id, std::make_shared<const StoredEvent>(std::move(e).value()));
    }
    std::lock_guard<std::mutex> lock(mu_);
    int queued = 0;
    for (auto& [id, e] : events) {
      Ref ref{id, {e->position, e->index}};
      if (items_.count(ref)) continue;  // already being replayed
      Item& item = items_[ref];
      item.event = std::move(e);
      ready_.insert(ref);
      ++queued;
    }
    cv_.notify_all();
    return queued;
  }

  Status Discard(int64_t id) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [ref, item] : items_) {
        if (ref.replay_id == id) {
          return Status::Conflict("parked event " + std::to_string(id) +
                                  " is being replayed; discard it after the replay ends");
        }
      }
    }
    if (auto s = store_->Discard(name_, id); !s.ok()) return s;
    parked_->Add(-1);
    return Status::Ok();
  }

  Result<StoredEvent> ReadEvent(EventKey key) const {
    auto page = log_->ReadStream(stream_, key.first - 1, 1);
    if (!page.ok()) return page.status();
    for (auto& e : page->events) {
      if (e.position == key.first && e.index == key.second) return std::move(e);
    }
    return Status::NotFound("event " + std::to_string(key.first) + "." +
                            std::to_string(key.second) + " of stream " + stream_ +
                            " is not in the local log");
  }

 private:
  // An item: an event of the window (replay_id 0), or a parked event being replayed.
  struct Ref {
    int64_t replay_id = 0;
    EventKey key;
    bool operator<(const Ref& o) const {
      return replay_id != o.replay_id ? replay_id < o.replay_id : key < o.key;
    }
  };
  struct Item {
    std::shared_ptr<const StoredEvent> event;
    int attempts = 0;  // deliveries tried (the app was reached)
    bool in_flight = false;
  };
  struct Job {
    Ref ref;
    std::shared_ptr<const StoredEvent> event;
    int attempt = 0;
  };
  struct JobResult {
    Job job;
    Outcome outcome = Outcome::kDone;
    std::string error;
    int64_t retry_after_ms = 0;
  };

  Json LagJson(int64_t watermark) const {
    int64_t events = static_cast<int64_t>(main_items_) +
                     (js_ != nullptr ? static_cast<int64_t>(fetched_.size() + consumer_pending_)
                                     : std::max<int64_t>(0, watermark - read_pos_));
    double seconds = 0;
    if (main_items_ > 0) {
      const auto& first = *items_.begin()->second.event;
      seconds = std::max(0.0, static_cast<double>(NowMicros() - first.time) / 1e6);
    }
    return {{"events", events}, {"seconds", seconds}};
  }

  // Scheduler thread.
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    state_ = "delivering";
    while (true) {
      if (stopping_) {
        // Answers in flight are recorded; nothing new goes out.
        const auto deadline =
            Clock::now() + std::chrono::milliseconds(std::min<int64_t>(deliver_.timeout_ms, 5000));
        while (in_flight_ > 0 && Clock::now() < deadline) {
          HandleResults(lock);
          if (in_flight_ > 0) cv_.wait_until(lock, deadline);
        }
        HandleResults(lock);
        Persist(lock);
        state_ = "stopped";
        return;
      }
      wake_ = false;
      Fill(lock);
      HandleResults(lock);
      // Recorded before the entity's next event goes out: after a crash the app never sees an
      // event before one it acknowledged earlier.
      Persist(lock);
      FireTimers();
      Dispatch();
      UpdateState();
      if (stopping_) continue;
      if (wake_ || !results_.empty()) continue;
      // Sleep until an answer, a watermark move, a timer, or a replay request.
      auto until = Clock::now() + std::chrono::seconds(1);
      if (!timers_.empty()) until = std::min(until, timers_.begin()->first);
      if (app_down_ && app_retry_at_ > Clock::now()) until = std::min(until, app_retry_at_);
      const bool can_read = main_items_ < kWindow;
      cv_.wait_until(lock, until, [&] {
        return stopping_ || !results_.empty() || (wake_ && can_read) ||
               (!ready_.empty() && CanDispatch());
      });
    }
  }

  // Reads the log after read_pos_ while the window has room.
  void Fill(std::unique_lock<std::mutex>& lock) {
    if (js_ != nullptr) return FillFromConsumer(lock);
    while (main_items_ < kWindow && read_pos_ < log_->Watermark(stream_)) {
      const int64_t after = read_pos_;
      lock.unlock();
      auto page = log_->ReadStream(stream_, after, kPage, types_);
      lock.lock();
      if (!page.ok()) {
        RecordError("reading the local log: " + page.status().message(), "");
        return;
      }
      if (identity_.empty()) {
        identity_ = log_->Identity(stream_);
        if (!identity_.empty()) identity_unsaved_ = true;
      }
      for (auto& e : page->events) {
        EventKey key{e.position, e.index};
        if (done_above_.count(key)) continue;  // acknowledged before a restart
        Ref ref{0, key};
        Item& item = items_[ref];
        item.event = std::make_shared<const StoredEvent>(std::move(e));
        ++main_items_;
        if (deliver_.ordering == DeliverOrdering::kEntity) {
          auto& queue = by_entity_[item.event->entity];
          queue.push_back(key);
          if (queue.size() == 1) ready_.insert(ref);
        } else {
          ready_.insert(ref);
        }
      }
      if (page->next <= read_pos_) break;
      read_pos_ = page->next;
    }
  }

  bool CanDispatch() const {
    if (in_flight_ >= deliver_.max_in_flight) return false;
    if (!app_down_) return true;
    return in_flight_ == 0 && Clock::now() >= app_retry_at_;  // one probe at a time
  }

  void Dispatch() {
    while (!ready_.empty() && CanDispatch() && !stopping_) {
      Ref ref = *ready_.begin();
      ready_.erase(ready_.begin());
      Item& item = items_.at(ref);
      item.in_flight = true;
      ++in_flight_;
      jobs_.push_back({ref, item.event, item.attempts + 1});
      jobs_cv_.notify_one();
    }
    in_flight_gauge_->Set(in_flight_);
  }

  void FireTimers() {
    const auto now = Clock::now();
    while (!timers_.empty() && timers_.begin()->first <= now) {
      ready_.insert(timers_.begin()->second);
      timers_.erase(timers_.begin());
    }
  }

  int64_t BackoffMs(int failures) {
    double d = static_cast<double>(deliver_.initial_backoff_ms);
    const auto max = static_cast<double>(deliver_.max_backoff_ms);
    for (int i = 1; i < failures && d < max; ++i) d *= 2;
    d = std::min(d, max);
    std::uniform_real_distribution<double> jitter(0.8, 1.0);
    return std::max<int64_t>(1, static_cast<int64_t>(d * jitter(rng_)));
  }

  void HandleResults(std::unique_lock<std::mutex>&) {
    while (!results_.empty()) {
      JobResult r = std::move(results_.front());
      results_.pop_front();
      --in_flight_;
      auto it = items_.find(r.job.ref);
      if (it == items_.end()) continue;
      Item& item = it->second;
      item.in_flight = false;
      const Ref ref = r.job.ref;
      if (r.outcome == Outcome::kAppDown) {
        if (!app_down_) {
          log::Warn("the app cannot be reached; deliveries wait for it",
                    {{"subscription", name_}, {"error", r.error}});
        }
        app_down_ = true;
        app_up_->Set(0);
        ++app_failures_;
        app_retry_at_ = Clock::now() + std::chrono::milliseconds(BackoffMs(app_failures_));
        detail_ = r.error;
        ready_.insert(ref);  // not the event's fault: no attempt counted
        continue;
      }
      if (app_down_) log::Info("the app is reachable again", {{"subscription", name_}});
      app_down_ = false;
      app_up_->Set(1);
      app_failures_ = 0;
      detail_.clear();
      item.attempts = r.job.attempt;
      if (r.outcome == Outcome::kRetry && item.attempts < deliver_.max_attempts) {
        retried_->Inc();
        RecordError(r.error, item.event->id);
        const int64_t delay =
            std::max(BackoffMs(item.attempts), std::min(r.retry_after_ms, deliver_.max_backoff_ms));
        timers_.emplace(Clock::now() + std::chrono::milliseconds(delay), ref);
        continue;
      }
      if (r.outcome == Outcome::kRetry || r.outcome == Outcome::kPark) {
        if (r.outcome == Outcome::kRetry) {
          r.error += " (attempt " + std::to_string(item.attempts) + " of " +
                     std::to_string(deliver_.max_attempts) + ")";
        }
        RecordError(r.error, item.event->id);
        Park(ref, item, r.error);
      } else {
        delivered_->Inc();
        if (ref.replay_id != 0) update_.unpark.push_back(ref.replay_id);
      }
      Finish(ref);
    }
  }

  void Park(const Ref& ref, const Item& item, const std::string& error) {
    ParkedEvent p;
    p.id = ref.replay_id;
    p.subscription = name_;
    p.key = ref.key;
    p.entity = item.event->entity;
    p.event_id = item.event->id;
    p.type = item.event->type;
    p.attempts = item.attempts;
    p.last_error = error;
    p.parked_at = NowMicros();
    log::Warn("delivery parked", {{"subscription", name_},
                                  {"event", p.event_id},
                                  {"entity", p.entity},
                                  {"position", p.key.first},
                                  {"error", error}});
    if (ref.replay_id != 0) {
      update_.reparked.push_back(std::move(p));
    } else {
      parked_total_->Inc();
      parked_->Add(1);
      update_.park.push_back(std::move(p));
    }
  }

  // The item is acknowledged or parked: it leaves the window, and its entity's next event
  // may go.
  void Finish(const Ref& ref) {
    auto it = items_.find(ref);
    const std::string entity = it->second.event->entity;
    items_.erase(it);
    if (ref.replay_id != 0) return;
    --main_items_;
    if (js_ != nullptr) {
      auto c = commit_left_.find(ref.key.first);
      if (c != commit_left_.end() && --c->second == 0) {
        commit_left_.erase(c);
        commit_prev_.erase(ref.key.first);
        AckCommit(ref.key.first);
      }
    } else {
      done_new_.push_back(ref.key);
    }
    if (deliver_.ordering != DeliverOrdering::kEntity) return;
    auto q = by_entity_.find(entity);
    if (q == by_entity_.end()) return;
    auto& queue = q->second;
    if (!queue.empty() && queue.front() == ref.key) queue.pop_front();
    if (queue.empty()) {
      by_entity_.erase(q);
      return;
    }
    // The entity's next commit held here may not follow this one: the commit between them
    // went to another pod, and it waits for that one as FillFromConsumer decided.
    const EventKey next = queue.front();
    if (auto p = commit_prev_.find(next.first);
        p != commit_prev_.end() && next.first != ref.key.first && PreviousMayBePending(p->second)) {
      blocked_[entity] = p->second;
    } else {
      ready_.insert(Ref{0, next});
    }
  }

  void Persist(std::unique_lock<std::mutex>& lock) {
    if (js_ != nullptr) return PersistParked(lock);
    const auto first = items_.begin();
    const bool any_main = first != items_.end() && first->first.replay_id == 0;
    const int64_t position = any_main ? first->first.key.first - 1 : read_pos_;
    if (position > position_) {
      update_.position = position;
      position_ = position;
      done_above_.erase(done_above_.begin(), done_above_.upper_bound({position, INT32_MAX}));
    }
    for (const auto& key : done_new_) {
      if (key.first > position_) {
        done_above_.insert(key);
        update_.acked.push_back(key);
      }
    }
    done_new_.clear();
    if (identity_unsaved_) {
      update_.identity = identity_;
      identity_unsaved_ = false;
    }
    PersistParked(lock);
  }

  // Writes update_ (parked events; positions too in local mode).
  void PersistParked(std::unique_lock<std::mutex>& lock) {
    if (!update_.position && update_.acked.empty() && update_.park.empty() &&
        update_.unpark.empty() && update_.reparked.empty() && !update_.identity) {
      return;
    }
    SubscriptionStore::Update u = std::move(update_);
    update_ = {};
    lock.unlock();
    Status s = store_->Apply(name_, u);
    lock.lock();
    if (!s.ok()) {
      // Keep what was not recorded for the next try: it is redelivered at worst, never lost.
      RecordError("recording the position: " + s.message(), "");
      for (auto& k : u.acked) update_.acked.push_back(k);
      for (auto& p : u.park) update_.park.push_back(std::move(p));
      for (auto id : u.unpark) update_.unpark.push_back(id);
      for (auto& p : u.reparked) update_.reparked.push_back(std::move(p));
      if (u.position) update_.position = u.position;
      if (u.identity) update_.identity = u.identity;
    } else if (!u.unpark.empty()) {
      parked_->Add(-static_cast<double>(u.unpark.size()));
    }
  }

  // --- group: service over NATS: JetStream's durable consumer says which commits this pod
  // delivers; the events come from the local log (the follower stores every commit).

  // Whether commit `prev` (0: none) may still be unacknowledged: delivered by another pod, or
  // by this one before a restart, and above JetStream's ack floor.
  bool PreviousMayBePending(int64_t prev) const {
    return prev > static_cast<int64_t>(ack_floor_) && !done_local_.count(prev);
  }

  void AckCommit(int64_t position) {
    if (durable_) durable_->Ack(static_cast<uint64_t>(position));
    done_local_.insert(position);
  }

  // Fetched commits the local log holds become items. An entity's first commit here waits
  // while the commit before it (delivered by another pod, or before a restart) may not be
  // acknowledged yet: until JetStream's ack floor passes it.
  void FillFromConsumer(std::unique_lock<std::mutex>& lock) {
    done_local_.erase(done_local_.begin(),
                      done_local_.upper_bound(static_cast<int64_t>(ack_floor_)));
    for (auto it = blocked_.begin(); it != blocked_.end();) {
      if (it->second <= static_cast<int64_t>(ack_floor_) || done_local_.count(it->second)) {
        ready_.insert(Ref{0, by_entity_[it->first].front()});
        it = blocked_.erase(it);
      } else {
        ++it;
      }
    }
    const int64_t watermark = log_->Watermark(stream_);
    while (!fetched_.empty() && static_cast<int64_t>(fetched_.front()) <= watermark &&
           main_items_ < kWindow) {
      const int64_t pos = static_cast<int64_t>(fetched_.front());
      fetched_.pop_front();
      if (commit_left_.count(pos) || done_local_.count(pos)) {
        if (done_local_.count(pos) && durable_) durable_->Ack(static_cast<uint64_t>(pos));
        continue;  // redelivered while still here, or done already
      }
      lock.unlock();
      auto page = log_->ReadStream(stream_, pos - 1, 1);
      std::vector<StoredEvent> events;
      int64_t prev = 0;
      if (page.ok()) {
        for (auto& e : page->events) {
          if (e.position != pos) continue;
          if (types_.empty() || types_.count(e.type)) events.push_back(std::move(e));
        }
        if (!events.empty() && deliver_.ordering == DeliverOrdering::kEntity &&
            events.front().version > 1) {
          auto before =
              log_->ReadEntity(stream_, events.front().entity, events.front().version - 1, 1);
          if (before.ok() && !before->events.empty()) prev = before->events.front().position;
        }
      }
      lock.lock();
      if (!page.ok()) {
        RecordError("reading the local log: " + page.status().message(), "");
        fetched_.push_front(static_cast<uint64_t>(pos));
        return;
      }
      if (events.empty()) {  // nothing of this commit matches `types`
        AckCommit(pos);
        continue;
      }
      commit_left_[pos] = static_cast<int>(events.size());
      for (auto& e : events) {
        EventKey key{e.position, e.index};
        Ref ref{0, key};
        Item& item = items_[ref];
        item.event = std::make_shared<const StoredEvent>(std::move(e));
        ++main_items_;
        if (deliver_.ordering != DeliverOrdering::kEntity) {
          ready_.insert(ref);
          continue;
        }
        const std::string& entity = item.event->entity;
        auto& queue = by_entity_[entity];
        commit_prev_[pos] = prev;
        const bool waits = PreviousMayBePending(prev);
        if (!queue.empty() && key < queue.front()) {
          // A commit redelivered after another pod died may come after the entity's later
          // commit, which waits for it: unless that one is being delivered, this one goes
          // first and the later one waits behind it.
          if (blocked_.erase(entity) > 0 || ready_.erase(Ref{0, queue.front()}) > 0) {
            queue.push_front(key);
            if (waits) {
              blocked_[entity] = prev;
            } else {
              ready_.insert(ref);
            }
            continue;
          }
          queue.insert(std::upper_bound(queue.begin() + 1, queue.end(), key), key);
          continue;
        }
        queue.insert(std::upper_bound(queue.begin(), queue.end(), key), key);
        if (queue.size() > 1) continue;
        if (waits) {
          blocked_[entity] = prev;
        } else {
          ready_.insert(ref);
        }
      }
    }
  }

  // Fetcher thread: binds to the durable consumer, fetches while fewer than kMaxHeld commits
  // are held, refreshes the ack floor, and keeps held commits from being redelivered.
  void FetchLoop() {
    std::shared_ptr<JetStreamDurable> durable;
    auto next_progress = Clock::now() + kProgressEvery;
    auto next_info = Clock::now();
    int failures = 0;
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      if (!durable) {
        nats_detail_ = "binding to the durable consumer " + consumer_;
        lock.unlock();
        auto d = js_->Durable(JetStreamName(ns_, stream_), StreamSubjects(ns_, stream_), consumer_,
                              kAckWaitMs, kMaxHeld);
        lock.lock();
        if (!d.ok()) {
          nats_detail_ = d.status().message();
          cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
          continue;
        }
        durable = std::move(d).value();
        durable_ = durable;
        nats_detail_.clear();
      }
      const size_t held = fetched_.size() + commit_left_.size();
      const bool want_floor = !blocked_.empty();
      std::vector<int64_t> progress;
      if (Clock::now() >= next_progress) {
        for (const auto& [pos, left] : commit_left_) progress.push_back(pos);
        for (uint64_t pos : fetched_) progress.push_back(static_cast<int64_t>(pos));
        next_progress = Clock::now() + kProgressEvery;
      }
      const bool info_due = want_floor || Clock::now() >= next_info;
      lock.unlock();
      for (int64_t pos : progress) durable->InProgress(static_cast<uint64_t>(pos));
      std::optional<JetStreamDurable::Info> info;
      if (info_due) {
        auto i = durable->GetInfo();
        if (i.ok()) info = *i;
        next_info = Clock::now() + std::chrono::seconds(1);
      }
      Result<std::vector<uint64_t>> got = std::vector<uint64_t>();
      if (held < static_cast<size_t>(kMaxHeld)) {
        got = durable->Fetch(static_cast<int>(std::min<size_t>(256, kMaxHeld - held)),
                             want_floor ? 50 : 500);
      }
      lock.lock();
      if (info) {
        ack_floor_ = std::max(ack_floor_, info->ack_floor);
        consumer_pending_ = info->pending;
        wake_ = true;
        cv_.notify_all();
      }
      if (!got.ok()) {
        nats_detail_ = got.status().message();
        ++failures;
        cv_.wait_for(lock, std::chrono::milliseconds(std::min(1000, 100 * failures)),
                     [&] { return stopping_; });
        continue;
      }
      failures = 0;
      nats_detail_.clear();
      if (got->empty() && held >= static_cast<size_t>(kMaxHeld)) {
        cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return stopping_; });
      }
      for (uint64_t seq : *got) fetched_.push_back(seq);
      if (!got->empty()) {
        wake_ = true;
        cv_.notify_all();
      }
    }
  }

  void UpdateState() {
    if (state_ == "reset") return;
    if (app_down_) {
      state_ = "waitingForApp";
    } else if (main_items_ == 0 && in_flight_ == 0 && ready_.empty()) {
      state_ = "idle";
    } else {
      state_ = "delivering";
    }
  }

  void RecordError(const std::string& message, const std::string& event_id) {
    last_error_ = message;
    last_error_event_ = event_id;
    last_error_at_ = NowMicros();
  }

  // Worker threads.
  void Work() {
    AppConnection app(host_, port_);
    const std::string authority = host_ + ":" + std::to_string(port_);
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      jobs_cv_.wait(lock, [&] { return workers_done_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      Job job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      const std::string request = BuildRequest(deliver_, authority, name_, *job.event, job.attempt);
      AppReply reply;
      AppFailure failure;
      std::string error;
      JobResult result;
      const auto start = Clock::now();
      if (app.Send(request, deliver_.timeout_ms, &reply, &failure, &error)) {
        duration_->Observe(std::chrono::duration<double>(Clock::now() - start).count());
        result.outcome = Classify(reply, &result.error, &result.retry_after_ms);
      } else if (failure == AppFailure::kConnect) {
        result.outcome = Outcome::kAppDown;
        result.error = error;
      } else {
        result.outcome = Outcome::kRetry;
        result.error = error;
      }
      result.job = std::move(job);
      lock.lock();
      results_.push_back(std::move(result));
      cv_.notify_all();
    }
  }

  const std::string name_;
  const std::string stream_;
  const std::set<std::string> types_;
  const DeliverConfig deliver_;
  const std::string host_;
  const int port_;
  EventLog* log_;
  Metrics* metrics_;
  SubscriptionStore* store_;
  Counter* delivered_;
  Counter* retried_;
  Counter* parked_total_;
  Gauge* parked_;
  Gauge* in_flight_gauge_;
  Gauge* lag_events_;
  Gauge* lag_seconds_;
  Gauge* app_up_;
  Histogram* duration_;

  mutable std::mutex mu_;
  std::condition_variable cv_;       // the scheduler waits on it
  std::condition_variable jobs_cv_;  // workers wait on it
  bool stopping_ = false;
  bool workers_done_ = false;
  bool wake_ = false;
  int subscription_id_ = 0;
  std::string state_ = "starting";
  std::string detail_;
  std::string identity_;
  bool identity_unsaved_ = false;
  std::string last_error_, last_error_event_;
  TimeMicros last_error_at_ = 0;

  int64_t position_ = 0;  // recorded: every event of the commits up to it is done
  int64_t read_pos_ = 0;  // the log is read up to here
  std::set<EventKey> done_above_;
  std::vector<EventKey> done_new_;
  SubscriptionStore::Update update_;

  std::map<Ref, Item> items_;
  size_t main_items_ = 0;
  std::unordered_map<std::string, std::deque<EventKey>> by_entity_;
  std::set<Ref> ready_;
  std::multimap<Clock::time_point, Ref> timers_;
  int in_flight_ = 0;
  bool app_down_ = false;
  int app_failures_ = 0;
  Clock::time_point app_retry_at_{};
  std::mt19937 rng_{std::random_device{}()};

  // group: service over NATS.
  JetStream* js_;
  const std::string ns_;
  const std::string consumer_;
  std::shared_ptr<JetStreamDurable> durable_;  // set by the fetcher once bound
  std::thread fetcher_;
  std::deque<uint64_t> fetched_;            // fetched commits the log may not hold yet
  std::map<int64_t, int> commit_left_;      // held commits: events not done yet
  std::map<int64_t, int64_t> commit_prev_;  // held commit -> the entity's commit before it
  std::set<int64_t> done_local_;            // acknowledged here, above the ack floor
  std::map<std::string, int64_t> blocked_;  // entity -> its previous commit, maybe not done
  uint64_t ack_floor_ = 0;
  uint64_t consumer_pending_ = 0;
  std::string nats_detail_;

  std::deque<Job> jobs_;
  std::deque<JobResult> results_;
  std::vector<std::thread> workers_;
  std::thread scheduler_;
};

// ---------------------------------------------------------------------------------------------

Deliveries::Deliveries(const SidecarConfig& config, EventLog* log, Metrics* metrics)
    : config_(config), log_(log), metrics_(metrics) {}

Deliveries::~Deliveries() { Stop(); }

Status Deliveries::Validate(const SidecarConfig& config) {
  for (const auto& s : config.streams) {
    if (s.deliver && s.deliver->port == 0 && config.app_port == 0) {
      return Status::Invalid("stream " + s.name +
                             " has a deliver: section but no port: set deliver.port, appPort, "
                             "or the SIDELOG_APP_PORT environment variable");
    }
  }
  return Status::Ok();
}

Status Deliveries::Start(JetStream* js) {
  std::vector<const StreamConfig*> with_delivery;
  for (const auto& s : config_.streams) {
    if (s.deliver) with_delivery.push_back(&s);
  }
  if (with_delivery.empty()) return Status::Ok();
  auto store = SubscriptionStore::Open(config_.data_dir + "/subscriptions.db");
  if (!store.ok()) return store.status();
  store_ = std::move(store).value();
  if (auto s = Validate(config_); !s.ok()) return s;
  for (const StreamConfig* s : with_delivery) {
    const int port = s->deliver->port != 0 ? s->deliver->port : config_.app_port;
    subscriptions_.push_back(
        std::make_unique<Subscription>(s->name, *s, *s->deliver, config_.app_host, port, log_,
                                       metrics_, store_.get(), js, config_.ns, config_.service));
  }
  for (auto& sub : subscriptions_) {
    if (auto st = sub->Start(); !st.ok()) return st;
  }
  metrics_->OnScrape([this] {
    for (auto& sub : subscriptions_) sub->RefreshGauges();
  });
  return Status::Ok();
}

void Deliveries::Stop() {
  for (auto& s : subscriptions_) s->Stop();
}

Json Deliveries::List() const {
  Json out = Json::array();
  for (const auto& s : subscriptions_) out.push_back(s->StatusJson());
  return out;
}

Result<Subscription*> Deliveries::Find(const std::string& name) const {
  for (const auto& s : subscriptions_) {
    if (s->name() == name) return s.get();
  }
  std::string known;
  for (const auto& s : subscriptions_) known += (known.empty() ? "" : ", ") + s->name();
  ErrorContext ctx;
  ctx.stream = name;
  return Status::NotFound(
      "no subscription " + name + " (a stream with deliver: makes one; " +
          (known.empty() ? std::string("none is configured") : "configured: " + known) + ")",
      ctx);
}

Result<Json> Deliveries::Get(const std::string& name) const {
  auto s = Find(name);
  if (!s.ok()) return s.status();
  return (*s)->StatusJson();
}

Result<Json> Deliveries::Parked(const std::string& name, int64_t after, int limit) const {
  auto s = Find(name);
  if (!s.ok()) return s.status();
  auto page = store_->Parked(name, after, limit);
  if (!page.ok()) return page.status();
  Json events = Json::array();
  for (const auto& p : *page) {
    Json j = {{"id", p.id},
              {"position", p.key.first},
              {"index", p.key.second},
              {"entity", p.entity},
              {"eventId", p.event_id},
              {"type", p.type},
              {"attempts", p.attempts},
              {"lastError", p.last_error},
              {"parkedAt", FormatTime(p.parked_at)}};
    if (auto e = (*s)->ReadEvent(p.key); e.ok()) j["event"] = ToCloudEvent(*e);
    events.push_back(std::move(j));
  }
  Json out = {{"subscription", name}, {"parked", events}, {"next", nullptr}};
  if (static_cast<int>(page->size()) == limit) out["next"] = page->back().id;
  return out;
}

Result<Json> Deliveries::Replay(const std::string& name,
                                const std::optional<std::vector<int64_t>>& ids) {
  auto s = Find(name);
  if (!s.ok()) return s.status();
  auto n = (*s)->Replay(ids);
  if (!n.ok()) return n.status();
  return Json{{"subscription", name}, {"replaying", *n}};
}

Status Deliveries::Discard(const std::string& name, int64_t id) {
  auto s = Find(name);
  if (!s.ok()) return s.status();
  return (*s)->Discard(id);
}

}  // namespace sidelog::sidecar
