#include "jetstream_reader.h"

#include "sidelog/log.h"
#include "sidelog/names.h"
#include "sidelog/replicator.h"

namespace sidelog::consolidator {

JetStreamReader::JetStreamReader(const ConsolidatorConfig& config, std::string stream,
                                 EventQueue* queue)
    : config_(config),
      stream_(std::move(stream)),
      jetstream_name_(JetStreamName(config.ns, stream_)),
      subjects_(StreamSubjects(config.ns, stream_)),
      queue_(queue) {}

JetStreamReader::~JetStreamReader() { Stop(); }

void JetStreamReader::Start(Cursor after, const std::string& identity) {
  Stop();
  queue_->Reset();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this, after, identity] { Run(after, identity); });
}

void JetStreamReader::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  queue_->Close();  // a Push blocked on a full queue returns
  if (thread_.joinable()) thread_.join();
  following_ = false;
}

bool JetStreamReader::stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

std::string JetStreamReader::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

Status JetStreamReader::Deliver(const JetStreamMessage& m, Cursor* after) {
  auto events = DecodeCommit(stream_, m);
  if (!events.ok()) {
    return Status::Internal("JetStream " + jetstream_name_ +
                            " holds a message that is not a commit at " + std::to_string(m.seq) +
                            ": " + events.status().message());
  }
  if (*dropped_) {
    return Status::Unavailable(
        "the connection to NATS dropped: the stream is checked again "
        "before reading on");
  }
  for (auto& e : *events) {
    if (!after->Before(e.position, e.index)) continue;  // already read
    Cursor at{e.position, e.index};
    if (!queue_->Push({std::move(e), at})) return Status::Unavailable("stopped");
    *after = at;
  }
  *after = Cursor{static_cast<int64_t>(m.seq), -1};  // the whole commit is read
  return Status::Ok();
}

void JetStreamReader::Run(Cursor after, const std::string& identity) {
  auto backoff = std::chrono::seconds(1);
  std::unique_ptr<JetStream> js;
  for (;;) {
    Cursor before = after;
    Status st;
    if (!js) {
      auto connected = JetStream::Connect(*config_.nats, [dropped = dropped_](bool up) {
        if (!up) *dropped = true;
      });
      if (connected.ok()) {
        js = std::move(connected).value();
        for (int i = 0; i < 100 && !js->connected() && !stopping(); ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      } else {
        st = connected.status();
      }
    }
    if (js) {
      *dropped_ = false;  // from here on a drop stops the deliveries until the next check
      auto info = js->Info(jetstream_name_);
      const std::string now = info.ok() ? "jetstream:" + std::to_string(info->created_ns) : "";
      if (!info.ok()) {
        st = info.status();
      } else if (!identity.empty() && now != identity) {
        st = Status::Conflict("SourceReset: JetStream stream " + jetstream_name_ +
                              " is not the one the checkpoint belongs to (identity " + now +
                              ", recorded " + identity + "); nothing is read from it");
      } else {
        {
          std::lock_guard<std::mutex> lock(mu_);
          last_error_.clear();
        }
        st = config_.delivery == Delivery::kPull ? Pull(js.get(), info->last_seq, &after)
                                                 : Push(js.get(), info->last_seq, &after);
        following_ = false;
      }
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return;
    last_error_ = st.message();
    if (before < after) backoff = std::chrono::seconds(1);  // it made progress: retry soon
    log::Warn("reading the stream from JetStream failed; retrying",
              {{"stream", stream_},
               {"jetstream", jetstream_name_},
               {"error", st.message()},
               {"after", after.ToString()},
               {"retryInSeconds", backoff.count()}});
    wake_.wait_for(lock, backoff, [&] { return stopping_; });
    if (stopping_) return;
    backoff = std::min(backoff * 2, std::chrono::seconds(30));
  }
}

// The first sequence to read: the commit of a cursor inside a commit, else the next one.
static uint64_t StartSequence(const Cursor& after) {
  return static_cast<uint64_t>(after.index >= 0 ? std::max<int64_t>(after.position, 1)
                                                : after.position + 1);
}

Status JetStreamReader::Pull(JetStream* js, uint64_t last_seq, Cursor* after) {
  auto puller = js->Pull(jetstream_name_, subjects_, StartSequence(*after));
  if (!puller.ok()) return puller.status();
  if (after->position >= static_cast<int64_t>(last_seq)) following_ = true;
  const int batch = std::max(1, std::min(config_.max_batch_events, 1000));
  while (!stopping()) {
    auto messages = (*puller)->Fetch(batch, 1000);
    if (!messages.ok()) return messages.status();
    for (const auto& m : *messages) {
      if (auto st = Deliver(m, after); !st.ok()) return st;
    }
    if (after->position >= static_cast<int64_t>(last_seq) ||
        messages->size() < static_cast<size_t>(batch)) {
      following_ = true;
    }
  }
  return Status::Unavailable("stopped");
}

Status JetStreamReader::Push(JetStream* js, uint64_t last_seq, Cursor* after) {
  // Messages arrive on a libnats thread; the cursor and the first error are shared with it.
  struct Shared {
    std::mutex mu;
    Cursor after;
    Status error;
    int in_callback = 0;
    bool closed = false;
    std::condition_variable idle;
  };
  auto shared = std::make_shared<Shared>();
  shared->after = *after;
  auto follower = js->Follow(jetstream_name_, subjects_, StartSequence(*after),
                             [this, shared](const JetStreamMessage& m) {
                               Cursor cursor;
                               {
                                 std::lock_guard<std::mutex> lock(shared->mu);
                                 if (shared->closed || !shared->error.ok()) return;
                                 ++shared->in_callback;
                                 cursor = shared->after;
                               }
                               Status st = Deliver(m, &cursor);
                               std::lock_guard<std::mutex> lock(shared->mu);
                               if (st.ok()) {
                                 shared->after = cursor;
                               } else if (shared->error.ok()) {
                                 shared->error = st;
                               }
                               if (--shared->in_callback == 0) shared->idle.notify_all();
                             });
  if (!follower.ok()) return follower.status();
  Status result = Status::Unavailable("stopped");
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stopping_; });
      if (stopping_) break;
    }
    std::lock_guard<std::mutex> lock(shared->mu);
    *after = shared->after;
    if (after->position >= static_cast<int64_t>(last_seq)) following_ = true;
    if (!shared->error.ok()) {
      result = shared->error;
      break;
    }
  }
  // Stop delivery, and wait for a callback that is running (it ends at once: the queue may be
  // closed) before `this` can go away.
  {
    std::lock_guard<std::mutex> lock(shared->mu);
    shared->closed = true;
  }
  follower->reset();
  {
    std::unique_lock<std::mutex> lock(shared->mu);
    shared->idle.wait(lock, [&] { return shared->in_callback == 0; });
    *after = shared->after;
  }
  return result;
}

}  // namespace sidelog::consolidator
