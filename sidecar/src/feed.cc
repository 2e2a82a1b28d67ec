#include "feed.h"

#include "sidelog/log.h"

namespace sidelog::sidecar {

using Clock = std::chrono::steady_clock;

struct Feed::Subscriber {
  std::string stream;
  std::set<std::string> types;
  int64_t after = 0;     // events after this position ...
  int after_index = -1;  // ... and, within it, after this index (-1: the whole commit is done)
  concurrency::streams::producer_consumer_buffer<uint8_t> buffer;
  std::atomic<bool> gone{false};
  Clock::time_point last_write = Clock::now();
  Clock::time_point over_limit_since{};
  std::string request_id;
  std::string hello;  // written before the first events
};

Feed::Feed(EventLog* log, Metrics* metrics, FeedOptions options)
    : log_(log), metrics_(metrics), options_(options) {
  // Called by the log's writer after every group commit: wake the feed only when someone is
  // waiting (a thread wake per batch costs the writer a few microseconds).
  log_subscription_ = log_->Subscribe([this](const std::string&, int64_t) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (subscribers_.empty() && waiters_.empty()) return;
      dirty_ = true;
    }
    cv_.notify_one();
  });
  metrics_->OnScrape([this] {
    metrics_->GetGauge("sidelog_sse_subscribers", "Open SSE subscriptions.")
        .Set(static_cast<double>(subscribers()));
  });
  thread_ = std::thread([this] { Run(); });
}

Feed::~Feed() { Stop(); }

void Feed::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  log_->Unsubscribe(log_subscription_);
  std::list<std::shared_ptr<Subscriber>> subs;
  std::list<Waiter> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    subs.swap(subscribers_);
    waiters.swap(waiters_);
  }
  for (auto& s : subs) s->buffer.close(std::ios_base::out).wait();
  for (auto& w : waiters) w.done(false);
}

size_t Feed::subscribers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return subscribers_.size();
}

void Feed::Subscribe(const web::http::http_request& request, const std::string& stream,
                     int64_t after, int after_index, std::set<std::string> types) {
  auto s = std::make_shared<Subscriber>();
  s->stream = stream;
  s->types = std::move(types);
  s->after = after;
  s->after_index = after_index;
  web::http::http_response resp(web::http::status_codes::OK);
  resp.headers().add("Cache-Control", "no-cache");
  resp.headers().add("X-Accel-Buffering", "no");
  resp.set_body(concurrency::streams::istream(s->buffer), "text/event-stream");
  // The opening lines are written by the feed thread: a pool thread must never wait on the
  // buffer (with a small pool that can stall the whole server).
  s->hello = "retry: 2000\n: subscribed to " + stream + "\n\n";
  std::weak_ptr<Subscriber> weak = s;
  request.reply(resp).then([weak, this](const pplx::task<void>& sent) {
    try {
      sent.get();
    } catch (...) {
    }
    // The response ended: the client went away, or we closed it.
    if (auto sub = weak.lock()) sub->gone = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      dirty_ = true;
    }
    cv_.notify_one();
  });
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      s->buffer.close(std::ios_base::out);
      return;
    }
    subscribers_.push_back(s);
    dirty_ = true;
  }
  cv_.notify_one();
}

void Feed::WaitFor(const std::string& stream, int64_t position, std::chrono::milliseconds timeout,
                   std::function<void(bool)> done) {
  if (log_->Watermark(stream) >= position) {
    done(true);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      waiters_.push_back({stream, position, Clock::now() + timeout, std::move(done)});
      dirty_ = true;
      cv_.notify_one();
      return;
    }
  }
  done(false);
}

bool Feed::Pump(Subscriber& s, bool heartbeat_due) {
  if (s.gone) return false;
  auto now = Clock::now();
  if (s.buffer.in_avail() > options_.max_buffered_bytes) {
    // The client reads slower than the stream grows: stop reading for it until it drains.
    if (s.over_limit_since == Clock::time_point{}) s.over_limit_since = now;
    return now - s.over_limit_since < std::chrono::milliseconds(options_.stuck_drop_ms);
  }
  s.over_limit_since = {};
  std::string out = std::move(s.hello);
  s.hello.clear();
  for (int pages = 0; pages < 8 && out.size() < options_.max_buffered_bytes; ++pages) {
    int64_t from = s.after_index >= 0 ? s.after - 1 : s.after;
    auto page = log_->ReadStream(s.stream, from, 500, s.types);
    if (!page.ok()) break;
    for (const auto& e : page->events) {
      if (s.after_index >= 0 && e.position == s.after && e.index <= s.after_index) continue;
      out += "id: " + std::to_string(e.position) + "." + std::to_string(e.index) +
             "\nevent: " + e.type +
             "\ndata: " + ToCloudEvent(e).dump(-1, ' ', false, Json::error_handler_t::replace) +
             "\n\n";
    }
    bool moved = page->next > s.after || s.after_index >= 0;
    s.after = std::max(page->next, s.after);
    s.after_index = -1;
    if (!moved || page->events.empty()) break;
  }
  if (out.empty() && heartbeat_due) out = ": heartbeat\n\n";
  if (!out.empty()) {
    // The buffer copies synchronously; the bytes stay alive until the write task completes, and
    // nothing here waits on a task (completions may need a pool thread).
    auto keep = std::make_shared<std::string>(std::move(out));
    try {
      s.buffer.putn_nocopy(reinterpret_cast<const uint8_t*>(keep->data()), keep->size())
          .then([keep](size_t) {});
      s.buffer.sync();  // hand the bytes to the sender now, not when 64 KiB piled up
    } catch (...) {
      return false;
    }
    s.last_write = now;
    metrics_->GetCounter("sidelog_sse_bytes_total", "Bytes written to SSE subscribers.")
        .Inc(static_cast<double>(keep->size()));
  }
  return true;
}

void Feed::Run() {
  auto next_heartbeat_check = Clock::now();
  for (;;) {
    std::list<std::shared_ptr<Subscriber>> subs;
    std::list<Waiter> fire_true, fire_false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(250), [&] { return stopping_ || dirty_; });
      if (stopping_) return;
      dirty_ = false;
      subs = subscribers_;
      auto now = Clock::now();
      for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (log_->Watermark(it->stream) >= it->position) {
          fire_true.splice(fire_true.end(), waiters_, it++);
        } else if (now >= it->deadline) {
          fire_false.splice(fire_false.end(), waiters_, it++);
        } else {
          ++it;
        }
      }
    }
    for (auto& w : fire_true) w.done(true);
    for (auto& w : fire_false) w.done(false);

    auto now = Clock::now();
    bool check_heartbeats = now >= next_heartbeat_check;
    if (check_heartbeats) next_heartbeat_check = now + std::chrono::milliseconds(250);
    std::vector<std::shared_ptr<Subscriber>> dropped;
    for (auto& s : subs) {
      bool due = check_heartbeats &&
                 now - s->last_write >= std::chrono::milliseconds(options_.heartbeat_ms);
      if (!Pump(*s, due)) dropped.push_back(s);
    }
    if (!dropped.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& d : dropped) subscribers_.remove(d);
    }
    for (auto& d : dropped) {
      if (!d->gone) log::Warn("dropping a stuck SSE subscriber", {{"stream", d->stream}});
      d->buffer.close(std::ios_base::out);
    }
  }
}

}  // namespace sidelog::sidecar
