#include "sidelog/replicator.h"

#include <unistd.h>

#include <chrono>

#include "fault.h"
#include "sidelog/log.h"
#include "sidelog/names.h"

namespace sidelog {

using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kBatchType = "application/cloudevents-batch+json";

}  // namespace

Replicator::Replicator(EventLog* log, Metrics* metrics, ReplicatorOptions options)
    : log_(log), metrics_(metrics), options_(std::move(options)) {}

Replicator::~Replicator() { Stop(); }

Status Replicator::Start() {
  auto js = JetStream::Connect(options_.nats, [this](bool up) {
    connected_ = up;
    log::Info(up ? "connected to NATS" : "disconnected from NATS", {{"url", options_.nats.url}});
  });
  if (!js.ok()) return js.status();
  js_ = std::move(js).value();
  connected_ = js_->connected();
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });

  // Startup: identities, followers, and a bounded catch-up. NATS being down is not an error:
  // the sidecar serves what its log holds and the monitor keeps trying.
  auto deadline = Clock::now() + std::chrono::milliseconds(options_.startup_catchup_ms);
  auto waiting = [&] { return Clock::now() < deadline && !options_.give_up_startup(); };
  while (!js_->connected() && waiting()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (js_->connected()) {
    for (const auto& s : options_.streams) {
      if (auto st = CheckIdentity(s); !st.ok()) {
        log::Warn("stream check failed", {{"stream", s}, {"error", st.message()}});
      }
      StartFollower(s);
    }
    for (const auto& s : options_.streams) {
      int64_t target;
      {
        std::lock_guard<std::mutex> lock(followers_mu_);
        target = last_seq_.count(s) ? last_seq_[s] : 0;
      }
      while (log_->Watermark(s) < target && waiting() && log_->Health(s) == StreamHealth::kOk) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  } else {
    log::Warn("NATS is unreachable; serving the local log and retrying",
              {{"url", options_.nats.url}});
  }
  monitor_ = std::thread([this] { MonitorLoop(); });
  return Status::Ok();
}

void Replicator::Stop() {
  if (stopping_.exchange(true)) return;
  {
    // Appends in flight finish (their acks time out at worst); new ones are refused.
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait_for(lock, std::chrono::milliseconds(options_.publish_timeout_ms + 2000),
                      [this] { return in_flight_ == 0; });
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
  if (monitor_.joinable()) monitor_.join();
  std::map<std::string, std::unique_ptr<JetStreamFollower>> followers;
  {
    std::lock_guard<std::mutex> lock(followers_mu_);
    followers.swap(followers_);
  }
  followers.clear();
  js_.reset();
}

Status Replicator::CheckIdentity(const std::string& stream) {
  const std::string name = JetStreamName(options_.ns, stream);
  // Read before asking JetStream: every commit under this watermark was in JetStream already,
  // so a last sequence below it means the stream lost commits. Read after, appends and the
  // follower racing the request would make a healthy stream look reset.
  const int64_t watermark = log_->Watermark(stream);
  auto info = js_->Info(name);
  if (!info.ok() && info.status().code() == Status::Code::kNotFound &&
      options_.nats.create_streams) {
    if (auto c = js_->CreateStream(name, StreamSubjects(options_.ns, stream)); !c.ok()) return c;
    log::Info("created JetStream stream", {{"stream", stream}, {"jetstream", name}});
    info = js_->Info(name);
  }
  if (!info.ok()) {
    if (info.status().code() == Status::Code::kNotFound) {
      std::lock_guard<std::mutex> lock(followers_mu_);
      missing_[stream] = info.status().message();
    }
    return info.status();
  }
  {
    std::lock_guard<std::mutex> lock(followers_mu_);
    missing_.erase(stream);
    last_seq_[stream] = static_cast<int64_t>(info->last_seq);
  }
  const std::string origin = std::to_string(info->created_ns);
  const std::string recorded = log_->Origin(stream);
  if (recorded.empty()) {
    if (auto s = log_->SetOrigin(stream, origin); !s.ok()) return s;
  } else if (recorded != origin || static_cast<int64_t>(info->last_seq) < watermark) {
    if (log_->Health(stream) != StreamHealth::kReset) {
      log::Error("JetStream stream was reset under this sidecar; refusing writes",
                 {{"stream", stream},
                  {"recordedOrigin", recorded},
                  {"origin", origin},
                  {"lastSeq", info->last_seq},
                  {"watermark", watermark}});
    }
    log_->SetHealth(stream, StreamHealth::kReset);
  }
  return Status::Ok();
}

void Replicator::StartFollower(const std::string& stream) {
  if (log_->Health(stream) != StreamHealth::kOk) return;
  const int64_t start = log_->Watermark(stream) + 1;
  auto follower = js_->Follow(
      JetStreamName(options_.ns, stream), StreamSubjects(options_.ns, stream),
      static_cast<uint64_t>(start), [this, stream](JetStreamMessage m) {
        auto events = DecodeCommit(stream, m);
        if (!events.ok()) {
          log::Error(
              "undecodable commit; the stream stops here",
              {{"stream", stream}, {"position", m.seq}, {"error", events.status().message()}});
          log_->SetHealth(stream, StreamHealth::kDiverged);
          return;
        }
        // Enqueued in stream order; the writer applies them in that order.
        log_->StoreCommitAsync(
            stream, static_cast<int64_t>(m.seq), m.msg_id, std::move(events).value(), true,
            [this, stream, seq = m.seq](const Result<AppendResult>& r) {
              if (!r.ok() && r.status().context().reason == "Diverged") {
                Post([this, stream] { (void)CheckIdentity(stream); });
              }
              if (!r.ok()) {
                log::Error(
                    "cannot store a replicated commit",
                    {{"stream", stream}, {"position", seq}, {"error", r.status().message()}});
              }
            });
      });
  if (!follower.ok()) {
    log::Warn("cannot follow stream yet",
              {{"stream", stream}, {"error", follower.status().message()}});
    return;
  }
  log::Info("following stream", {{"stream", stream}, {"from", start}});
  std::lock_guard<std::mutex> lock(followers_mu_);
  followers_[stream] = std::move(follower).value();
}

Result<std::vector<StoredEvent>> DecodeCommit(const std::string& stream,
                                              const JetStreamMessage& m) {
  Json batch = Json::parse(m.data, nullptr, false);
  if (!batch.is_array() || batch.empty()) {
    return Status::Invalid("the message at " + std::to_string(m.seq) +
                           " is not a non-empty CloudEvents batch");
  }
  std::vector<StoredEvent> events;
  std::vector<std::string> ids;
  for (size_t i = 0; i < batch.size(); ++i) {
    auto e = FromCloudEvent(batch[i]);
    if (!e.ok()) return e.status();
    if (e->stream != stream) {
      return Status::Invalid("event " + e->id + " names stream " + e->stream + ", not " + stream);
    }
    if (!events.empty() && e->entity != events.front().entity) {
      return Status::Invalid("a commit spans two entities");
    }
    e->position = static_cast<int64_t>(m.seq);
    e->index = static_cast<int32_t>(i);
    ids.push_back(e->id);
    events.push_back(std::move(e).value());
  }
  return events;
}

void Replicator::AppendAsync(AppendRequest request, EventLog::AppendCallback done) {
  auto op = std::make_shared<Op>();
  op->key = request.stream + '\0' + request.entity;
  op->request = std::make_shared<AppendRequest>(std::move(request));
  op->done = std::move(done);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      auto [turn, first] = entity_turns_.try_emplace(op->key);
      if (!first) {
        turn->second.push_back(std::move(op));  // another append of this entity is in flight
        return;
      }
      ++in_flight_;
      op->started = true;
    }
  }
  if (!op->started) {
    ErrorContext ctx;
    ctx.retry_after_seconds = 1;
    op->done(Status::Unavailable("the sidecar is shutting down", ctx));
    return;
  }
  Begin(op);
}

// The pipelined path: plan on the log's writer thread, publish without waiting, store when the
// PubAck comes, answer. No thread waits for a round trip, so appends to many entities overlap
// and the writer groups plans and stores into shared transactions. Anything unusual (a
// conflict, a duplicate PubAck, a diverged store) goes to a worker and the synchronous Append.
void Replicator::Begin(const std::shared_ptr<Op>& op) {
  log_->PlanAsync(op->request,
                  [this, op](Result<PlannedCommit> plan) { OnPlanned(op, std::move(plan)); });
}

void Replicator::OnPlanned(const std::shared_ptr<Op>& op, Result<PlannedCommit> plan) {
  if (!plan.ok() && LocalConflictMayBeStale(plan.status(), *op->request)) {
    return Post([this, op] { Finish(op, Append(*op->request)); });  // catches up first
  }
  if (!plan.ok()) return Finish(op, plan.status());
  if (plan->result.replay) return Finish(op, std::move(plan->result));
  // The ids are the request's now: a retry after a conflict is the same commit.
  for (auto& e : op->request->events) e.id_generated = false;
  auto payload = EncodeCommit(*op->request, *plan);
  if (!payload.ok()) return Finish(op, payload.status());
  auto planned = std::make_shared<PlannedCommit>(std::move(plan).value());
  js_->PublishAsync(
      EntitySubject(options_.ns, op->request->stream, op->request->entity),
      planned->result.commit_id, static_cast<uint64_t>(planned->expected_last_position), kBatchType,
      *payload, options_.publish_timeout_ms,
      [this, op, planned](Result<PubAck> ack) { OnAcked(op, planned, std::move(ack)); });
}

void Replicator::OnAcked(const std::shared_ptr<Op>& op,
                         const std::shared_ptr<PlannedCommit>& planned, Result<PubAck> ack) {
  const AppendRequest& request = *op->request;
  Status failure;
  const AckNext next = Classify(ack, request, &failure);
  if (next == AckNext::kStore) {
    log_->StoreCommitAsync(request.stream, static_cast<int64_t>(ack->seq),
                           planned->result.commit_id, std::move(planned->events), false,
                           [this, op](Result<AppendResult> stored) {
                             if (!stored.ok() && stored.status().context().reason == "Diverged") {
                               Post([this, op, stored = std::move(stored)]() mutable {
                                 Finish(op, AfterDiverged(*op->request, std::move(stored)));
                               });
                               return;
                             }
                             Finish(op, std::move(stored));
                           });
    return;
  }
  if (next == AckNext::kFail) return Finish(op, failure);
  // Catch up this entity and decide again, on a worker.
  Post([this, op, after = planned->expected_last_position] {
    const AppendRequest& r = *op->request;
    if (auto c = CatchUpEntity(r.stream, r.entity, after); !c.ok()) return Finish(op, c);
    Finish(op, Append(*op->request));
  });
}

// Answers `op` and gives its entity's turn to the next append waiting for it.
void Replicator::Finish(const std::shared_ptr<Op>& op, Result<AppendResult> result) {
  op->done(std::move(result));
  std::shared_ptr<Op> next;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto turn = entity_turns_.find(op->key);
    if (turn->second.empty()) {
      entity_turns_.erase(turn);
      --in_flight_;
      idle_cv_.notify_all();
    } else {
      next = std::move(turn->second.front());
      turn->second.pop_front();
    }
  }
  if (next) Begin(next);
}

// What a publish's outcome asks for, counted in sidelog_jetstream_publishes_total: store the
// commit at the acknowledged sequence; fail (*failure, with the request's stream and entity);
// or, for a conflict or a duplicate PubAck (never trusted alone), catch the entity up and
// decide again.
Replicator::AckNext Replicator::Classify(const Result<PubAck>& ack, const AppendRequest& request,
                                         Status* failure) {
  if (ack.ok() && !ack->duplicate) {
    if (FaultPoint("crash-after-puback")) _exit(137);  // as a power cut here would
    CountPublish("ok");
    return AckNext::kStore;
  }
  const bool conflict = !ack.ok() && ack.status().code() == Status::Code::kConflict;
  if (!ack.ok() && !conflict) {
    CountPublish("unavailable");
    ErrorContext ctx = ack.status().context();
    ctx.stream = request.stream;
    ctx.entity = request.entity;
    *failure = Status(ack.status().code(), ack.status().message(), ctx);
    return AckNext::kFail;
  }
  CountPublish(conflict ? "conflict" : "duplicate");
  return AckNext::kCatchUp;
}

void Replicator::CountPublish(const char* result) {
  metrics_
      ->GetCounter("sidelog_jetstream_publishes_total", "Publishes by result.",
                   {{"result", result}})
      .Inc();
}

// The commit as one JetStream message: a CloudEvents batch. TooLarge beyond NATS max_payload.
Result<std::string> Replicator::EncodeCommit(const AppendRequest& request,
                                             const PlannedCommit& plan) const {
  Json batch = Json::array();
  for (const auto& e : plan.events) batch.push_back(ToCloudEvent(e));
  std::string payload = batch.dump();
  if (static_cast<int64_t>(payload.size()) > js_->max_payload() && js_->max_payload() > 0) {
    ErrorContext ctx;
    ctx.stream = request.stream;
    ctx.entity = request.entity;
    ctx.rule = "nats.maxPayload";
    return Status::TooLarge("the encoded commit has " + std::to_string(payload.size()) +
                                " bytes; NATS max_payload is " + std::to_string(js_->max_payload()),
                            ctx);
  }
  return payload;
}

// A store that found another commit at the acknowledged sequence: most likely the stream was
// deleted and recreated under this log.
Result<AppendResult> Replicator::AfterDiverged(AppendRequest& request,
                                               Result<AppendResult> stored) {
  (void)CheckIdentity(request.stream);
  if (log_->Health(request.stream) == StreamHealth::kReset) {
    return log_->Plan(request).status();  // answers 503 StreamReset
  }
  return stored;
}

void Replicator::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!draining_) {
      queue_.push_back(std::move(task));
      cv_.notify_one();
      return;
    }
  }
  task();
}

void Replicator::WorkerLoop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return draining_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

Result<AppendResult> Replicator::Append(AppendRequest& request) {
  const std::string subject = EntitySubject(options_.ns, request.stream, request.entity);
  bool caught_up = false;
  for (int attempt = 0; attempt < 25; ++attempt) {
    if (attempt > 2) {  // other replicas keep winning: back off a little, with jitter
      std::this_thread::sleep_for(std::chrono::microseconds(200 * attempt + rand() % 1000));
    }
    auto plan = log_->Plan(request);
    if (!plan.ok() && !caught_up && LocalConflictMayBeStale(plan.status(), request)) {
      // Every commit of the entity this replica lacks is above its watermark.
      caught_up = true;
      if (auto c = CatchUpEntity(request.stream, request.entity, log_->Watermark(request.stream));
          !c.ok()) {
        return c;
      }
      continue;
    }
    if (!plan.ok()) return plan.status();
    if (plan->result.replay) return plan->result;
    if (!plan->events.empty()) {
      // Keep the ids the first plan generated, so a retry after a conflict is the same commit.
      for (size_t i = 0; i < request.events.size(); ++i) {
        request.events[i].id = plan->events[i].id;
        request.events[i].id_generated = false;
      }
    }
    auto payload = EncodeCommit(request, *plan);
    if (!payload.ok()) return payload.status();
    auto ack = js_->Publish(subject, plan->result.commit_id,
                            static_cast<uint64_t>(plan->expected_last_position), kBatchType,
                            *payload, options_.publish_timeout_ms);
    Status failure;
    const AckNext next = Classify(ack, request, &failure);
    if (next == AckNext::kStore) {
      auto stored = log_->StoreCommit(request.stream, static_cast<int64_t>(ack->seq),
                                      plan->result.commit_id, std::move(plan->events), false);
      if (!stored.ok() && stored.status().context().reason == "Diverged") {
        return AfterDiverged(request, std::move(stored));
      }
      return stored;
    }
    if (next == AckNext::kFail) return failure;
    // Catch up this entity and decide again.
    if (auto c = CatchUpEntity(request.stream, request.entity, plan->expected_last_position);
        !c.ok()) {
      return c;
    }
  }
  ErrorContext ctx;
  ctx.stream = request.stream;
  ctx.entity = request.entity;
  ctx.retry_after_seconds = 1;
  return Status::Unavailable("the entity kept changing under 25 attempts; retry", ctx);
}

// A conflict the local log decided may be stale: the expected version can be one that another
// replica wrote and this one has not received yet. Only then is it worth asking JetStream; a
// local version above the expected one, or an entity that exists when none was expected, is
// final (versions only grow).
bool Replicator::LocalConflictMayBeStale(const Status& status, const AppendRequest& request) {
  if (status.code() != Status::Code::kConflict) return false;
  const auto& current = status.context().current_version;
  switch (request.expected.kind) {
    case ExpectedVersion::Kind::kExact:
      return !current || *current < request.expected.version;
    case ExpectedVersion::Kind::kExists:
      return !current || *current == 0;
    default:
      return false;
  }
}

Status Replicator::CatchUpEntity(const std::string& stream, const std::string& entity,
                                 int64_t after) {
  auto msgs =
      js_->FetchSubject(JetStreamName(options_.ns, stream),
                        EntitySubject(options_.ns, stream, entity), static_cast<uint64_t>(after));
  if (!msgs.ok()) return msgs.status();
  for (const auto& m : *msgs) {
    auto events = DecodeCommit(stream, m);
    if (!events.ok()) return events.status();
    auto stored = log_->StoreCommit(stream, static_cast<int64_t>(m.seq), m.msg_id,
                                    std::move(events).value(), false);
    if (!stored.ok()) return stored.status();
  }
  return Status::Ok();
}

void Replicator::CatchUp(const std::string& stream, const std::function<void(bool)>& done) {
  if (!js_ || !js_->connected()) {
    done(false);
    return;
  }
  auto info = js_->Info(JetStreamName(options_.ns, stream));
  if (!info.ok()) {
    done(false);
    return;
  }
  const int64_t target = static_cast<int64_t>(info->last_seq);
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (log_->Watermark(stream) < target && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  done(log_->Watermark(stream) >= target);
}

void Replicator::MonitorLoop() {
  std::map<std::string, std::pair<int64_t, int>> stalled;  // watermark, checks without progress
  while (!stopping_) {
    for (int i = 0; i < 10 && !stopping_; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (stopping_) break;
    metrics_->GetGauge("sidelog_nats_connected", "1 when connected to NATS.")
        .Set(connected_ ? 1 : 0);
    if (!js_->connected()) continue;
    for (const auto& s : options_.streams) {
      (void)CheckIdentity(s);
      bool has_follower;
      int64_t last;
      {
        std::lock_guard<std::mutex> lock(followers_mu_);
        has_follower = followers_.count(s) > 0;
        last = last_seq_.count(s) ? last_seq_[s] : -1;
      }
      const int64_t wm = log_->Watermark(s);
      // Behind: JetStream has more (its last sequence, when the last stream info answered), or
      // this sidecar's own acknowledged appends passed the watermark (known even while stream
      // info requests time out, as they do while a cluster elects leaders).
      int64_t target = last;
      if (auto st = log_->Stats(s); st.ok()) target = std::max(target, st->last_position);
      if (last >= 0) {
        metrics_
            ->GetGauge("sidelog_replication_lag_commits",
                       "JetStream last sequence minus the local watermark.", {{"stream", s}})
            .Set(static_cast<double>(std::max<int64_t>(0, last - wm)));
      }
      // A follower that makes no progress while behind for 3 checks is replaced: the old one
      // stops delivering at once, the new one follows from the watermark, and the old one is
      // destroyed after that (deleting its consumer can wait for JetStream).
      auto& [seen, checks] = stalled[s];
      if (wm < target && wm == seen) {
        ++checks;
      } else {
        checks = 0;
      }
      seen = wm;
      if (!has_follower || checks >= 3) {
        if (checks >= 3) {
          log::Warn("replication stalled; following the stream again from the watermark",
                    {{"stream", s}, {"watermark", wm}, {"lastSeq", last}, {"target", target}});
        }
        std::unique_ptr<JetStreamFollower> old;
        {
          std::lock_guard<std::mutex> lock(followers_mu_);
          if (auto it = followers_.find(s); it != followers_.end()) {
            old = std::move(it->second);
            followers_.erase(it);
          }
        }
        if (old) old->Stop();
        StartFollower(s);
        old.reset();
        checks = 0;
      }
    }
  }
}

std::vector<StreamReplicationStatus> Replicator::StreamStatus() const {
  std::vector<StreamReplicationStatus> out;
  std::lock_guard<std::mutex> lock(followers_mu_);
  for (const auto& s : options_.streams) {
    StreamReplicationStatus st;
    st.name = s;
    st.jetstream = JetStreamName(options_.ns, s);
    st.watermark = log_->Watermark(s);
    if (auto it = last_seq_.find(s); it != last_seq_.end()) st.last_seq = it->second;
    switch (log_->Health(s)) {
      case StreamHealth::kReset:
        st.state = "reset";
        break;
      case StreamHealth::kDiverged:
        st.state = "diverged";
        break;
      default:
        st.state = missing_.count(s) ? "missing" : (st.last_seq < 0 ? "unknown" : "ok");
    }
    out.push_back(st);
  }
  return out;
}

}  // namespace sidelog
