#include "sidelog/jetstream.h"

#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace sidelog {
namespace {

std::string LastError(natsStatus s) {
  const char* text = nats_GetLastError(nullptr);
  return std::string(natsStatus_GetText(s)) + (text && *text ? std::string(": ") + text : "");
}

Status Unavailable(const std::string& what, bool outcome_unknown = false) {
  ErrorContext ctx;
  ctx.outcome_unknown = outcome_unknown;
  ctx.retry_after_seconds = 1;
  ctx.reason = "NatsUnavailable";
  return Status::Unavailable(what, ctx);
}

// Set by hand: jsPubOptions treats ExpectLastSubjectSeq = 0 as unset, and 0 must mean "this
// subject must be empty".
void SetPublishHeaders(natsMsg* msg, const std::string& msg_id, uint64_t expected,
                       const std::string& content_type) {
  std::string seq = std::to_string(expected);
  natsMsgHeader_Set(msg, "Nats-Msg-Id", msg_id.c_str());
  natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence", seq.c_str());
  natsMsgHeader_Set(msg, "Content-Type", content_type.c_str());
}

}  // namespace

Status PublishFailure(bool no_responders, int js_error, const std::string& text,
                      const std::string& subject) {
  if (no_responders) {
    return Unavailable("no JetStream stream stores " + subject + "; nothing was stored");
  }
  // JSStreamWrongLastSequenceErr (10071, "wrong last sequence: N"), and
  // JSStreamWrongLastSequenceConstantErr (10164), which newer servers answer without the current
  // sequence when the subject's last message is still being stored: another commit won.
  if (js_error == 10071 || js_error == 10164) {
    ErrorContext ctx;
    ctx.rule = "expectedLastSubjectSequence";
    auto at = text.find("wrong last sequence: ");
    if (at != std::string::npos) ctx.current_version = std::stoll(text.substr(at + 21));
    return Status::Conflict("JetStream: " + text, ctx);
  }
  switch (js_error) {
    case 0:
      break;
    // Transient refusals of a clustered stream while its leader changes or is overloaded:
    // JSClusterNotAvailErr, JSStreamExpectedLastSeqPerSubjectNotReady, JSStreamTooManyRequests.
    // The message was not stored; the client retries.
    case 10008:
    case 10163:
    case 10167:
      return Unavailable("JetStream is busy or electing a leader (error " +
                         std::to_string(js_error) + "): " + text + "; retry");
    // JSStreamDuplicateMessageConflict: a publish of this very commit is still in process, so
    // whether it is stored is not known yet.
    case 10158:
      return Unavailable("JetStream is still storing this commit (error 10158): " + text,
                         /*outcome_unknown=*/true);
    // JSStreamStoreFailedF: the stream did not store the message. With discard: new at a limit
    // ("maximum messages exceeded", "maximum bytes exceeded", "maximum messages per subject
    // exceeded"), or out of storage. Nothing was stored; a retry succeeds only once the stream
    // has room (its limits are raised, or old messages go).
    case 10077: {
      ErrorContext ctx;
      ctx.reason = "StreamFull";
      ctx.retry_after_seconds = 30;
      return Status::Unavailable("JetStream did not store the commit (" + text +
                                     "): the stream is at one of its limits (discard: new) or "
                                     "out of storage; nothing was stored",
                                 ctx);
    }
    // JSStreamMessageExceedsMaximumErr: the stream's max_msg_size is below NATS max_payload.
    case 10054: {
      ErrorContext ctx;
      ctx.rule = "maxMsgSize";
      return Status::TooLarge("JetStream refused the commit: " + text, ctx);
    }
    default:
      return Status::Internal("JetStream refused the publish (error " + std::to_string(js_error) +
                              "): " + text);
  }
  return Unavailable("publishing to JetStream: " + text, /*outcome_unknown=*/true);
}

namespace {

// A failed publish as the Status JetStream::Publish documents.
Status PublishError(natsStatus s, jsErrCode jerr, const std::string& text,
                    const std::string& subject) {
  return PublishFailure(s == NATS_NO_RESPONDERS, static_cast<int>(jerr), text, subject);
}

struct MsgDeleter {
  void operator()(natsMsg* m) const { natsMsg_Destroy(m); }
};
using MsgPtr = std::unique_ptr<natsMsg, MsgDeleter>;

JetStreamMessage Decode(natsMsg* msg) {
  JetStreamMessage m;
  m.subject = natsMsg_GetSubject(msg);
  m.data.assign(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
  const char* id = nullptr;
  if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id) m.msg_id = id;
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
    m.seq = meta->Sequence.Stream;
    jsMsgMetaData_Destroy(meta);
  } else {
    m.seq = natsMsg_GetSequence(msg);  // messages from js_GetMsg carry it directly
  }
  return m;
}

class Follower : public JetStreamFollower {
 public:
  ~Follower() override {
    if (sub_) {
      natsSubscription_Unsubscribe(sub_);
      natsSubscription_Destroy(sub_);
    }
  }
  static void OnMsg(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto* self = static_cast<Follower*>(closure);
    MsgPtr owned(msg);
    std::lock_guard<std::mutex> lock(self->mu_);
    if (!self->stopped_) self->fn_(Decode(msg));
  }
  void Stop() override {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
  }
  natsSubscription* sub_ = nullptr;
  std::function<void(JetStreamMessage)> fn_;
  std::mutex mu_;
  bool stopped_ = false;
};

class Puller : public JetStreamPuller {
 public:
  ~Puller() override {
    if (sub_) {
      natsSubscription_Unsubscribe(sub_);
      natsSubscription_Destroy(sub_);
    }
  }
  Result<std::vector<JetStreamMessage>> Fetch(int batch, int wait_ms) override {
    natsMsgList list{};
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = natsSubscription_Fetch(&list, sub_, batch, wait_ms, &jerr);
    std::vector<JetStreamMessage> out;
    if (s == NATS_TIMEOUT) return out;  // nothing new
    if (s != NATS_OK) {
      return Unavailable("fetching from JetStream: " + LastError(s));
    }
    for (int i = 0; i < list.Count; ++i) out.push_back(Decode(list.Msgs[i]));
    natsMsgList_Destroy(&list);
    return out;
  }
  natsSubscription* sub_ = nullptr;
};

class DurableConsumer : public JetStreamDurable {
 public:
  ~DurableConsumer() override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [seq, msg] : held_) natsMsg_Destroy(msg);
    held_.clear();
    if (sub_) natsSubscription_Destroy(sub_);  // the consumer stays on the server
  }
  Result<std::vector<uint64_t>> Fetch(int batch, int wait_ms) override {
    natsMsgList list{};
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = natsSubscription_Fetch(&list, sub_, batch, wait_ms, &jerr);
    std::vector<uint64_t> out;
    if (s == NATS_TIMEOUT) return out;
    if (s != NATS_OK) return Unavailable("fetching from consumer " + name_ + ": " + LastError(s));
    std::lock_guard<std::mutex> lock(mu_);
    for (int i = 0; i < list.Count; ++i) {
      natsMsg* msg = list.Msgs[i];
      list.Msgs[i] = nullptr;
      jsMsgMetaData* meta = nullptr;
      if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
        natsMsg_Destroy(msg);
        continue;
      }
      const uint64_t seq = meta->Sequence.Stream;
      jsMsgMetaData_Destroy(meta);
      auto [it, fresh] = held_.emplace(seq, msg);
      if (!fresh) {  // redelivered while held: keep the newest handle
        natsMsg_Destroy(it->second);
        it->second = msg;
      }
      out.push_back(seq);
    }
    natsMsgList_Destroy(&list);
    return out;
  }
  void Ack(uint64_t seq) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = held_.find(seq);
    if (it == held_.end()) return;
    (void)natsMsg_Ack(it->second, nullptr);
    natsMsg_Destroy(it->second);
    held_.erase(it);
  }
  void InProgress(uint64_t seq) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = held_.find(seq); it != held_.end()) (void)natsMsg_InProgress(it->second, nullptr);
  }
  Result<Info> GetInfo() override {
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_GetConsumerInfo(&ci, js_, stream_.c_str(), name_.c_str(), nullptr, &jerr);
    if (s != NATS_OK) return Unavailable("consumer info of " + name_ + ": " + LastError(s));
    Info info;
    info.ack_floor = ci->AckFloor.Stream;
    info.pending = ci->NumPending;
    info.ack_pending = ci->NumAckPending;
    jsConsumerInfo_Destroy(ci);
    return info;
  }

  jsCtx* js_ = nullptr;
  std::string stream_, name_;
  natsSubscription* sub_ = nullptr;
  std::mutex mu_;
  std::map<uint64_t, natsMsg*> held_;  // fetched, not acknowledged yet
};

class NatsJetStream : public JetStream {
 public:
  using JetStream::CreateStream;
  ~NatsJetStream() override {
    closing_ = true;  // no more state callbacks into the owner
    if (js_) jsCtx_Destroy(js_);
    if (js_async_) {
      // Acks still due arrive no more: answer them as unknown outcomes.
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MaxWait = 2000;
      (void)js_PublishAsyncComplete(js_async_, &po);
      jsCtx_Destroy(js_async_);
    }
    if (nc_) {
      natsConnection_Close(nc_);
      FailPending("the NATS connection closed before JetStream acknowledged the publish");
      // libnats runs connection callbacks on its own thread, after Close returns: wait for the
      // closed callback (the last one) so none of them runs into a destroyed object.
      std::unique_lock<std::mutex> lock(closed_mu_);
      closed_cv_.wait_for(lock, std::chrono::seconds(5), [this] { return closed_; });
      lock.unlock();
      natsConnection_Destroy(nc_);
    }
    if (opts_) natsOptions_Destroy(opts_);
  }

  static void OnConnected(natsConnection*, void* closure) {
    auto* self = static_cast<NatsJetStream*>(closure);
    if (self->on_state_ && !self->closing_) self->on_state_(true);
  }
  static void OnDisconnected(natsConnection*, void* closure) {
    auto* self = static_cast<NatsJetStream*>(closure);
    if (self->on_state_ && !self->closing_) self->on_state_(false);
  }
  static void OnClosed(natsConnection*, void* closure) {
    auto* self = static_cast<NatsJetStream*>(closure);
    std::lock_guard<std::mutex> lock(self->closed_mu_);
    self->closed_ = true;
    self->closed_cv_.notify_all();
  }

  Status Open(const NatsConfig& c, std::function<void(bool)> on_state) {
    on_state_ = std::move(on_state);
    natsStatus s = natsOptions_Create(&opts_);
    auto fail = [&](const std::string& what) {
      return Status::Invalid("nats: " + what + ": " + LastError(s));
    };
    if (s != NATS_OK) return fail("options");
    // A comma-separated list of servers (a cluster) goes through SetServers: SetURL takes one.
    std::vector<std::string> urls;
    for (size_t start = 0; start <= c.url.size();) {
      size_t comma = c.url.find(',', start);
      if (comma == std::string::npos) comma = c.url.size();
      std::string u = c.url.substr(start, comma - start);
      while (!u.empty() && u.front() == ' ') u.erase(u.begin());
      while (!u.empty() && u.back() == ' ') u.pop_back();
      if (!u.empty()) urls.push_back(u);
      start = comma + 1;
    }
    if (urls.size() > 1) {
      std::vector<const char*> servers;
      servers.reserve(urls.size());
      for (const auto& u : urls) servers.push_back(u.c_str());
      s = natsOptions_SetServers(opts_, servers.data(), static_cast<int>(servers.size()));
      if (s != NATS_OK) return fail("servers " + c.url);
    } else {
      natsOptions_SetURL(opts_, c.url.c_str());
    }
    natsOptions_SetName(opts_, "sidelog");
    if (!c.inbox_prefix.empty() &&
        (s = natsOptions_SetCustomInboxPrefix(opts_, c.inbox_prefix.c_str())) != NATS_OK) {
      return fail("inbox prefix " + c.inbox_prefix);
    }
    natsOptions_SetMaxReconnect(opts_, -1);
    natsOptions_SetReconnectWait(opts_, 250);
    natsOptions_SetReconnectBufSize(opts_, 0);
    // Each publish is a commit someone waits for: write it in the publish call instead of
    // waking the flusher thread for it.
    natsOptions_SetSendAsap(opts_, true);
    natsOptions_SetDisconnectedCB(opts_, &OnDisconnected, this);
    natsOptions_SetReconnectedCB(opts_, &OnConnected, this);
    natsOptions_SetClosedCB(opts_, &OnClosed, this);
    natsOptions_SetRetryOnFailedConnect(opts_, true, &OnConnected, this);
    if (!c.creds_file.empty() && (s = natsOptions_SetUserCredentialsFromFiles(
                                      opts_, c.creds_file.c_str(), nullptr)) != NATS_OK) {
      return fail("credsFile " + c.creds_file);
    }
    if (!c.user.empty()) natsOptions_SetUserInfo(opts_, c.user.c_str(), c.password.c_str());
    if (!c.token.empty()) natsOptions_SetToken(opts_, c.token.c_str());
    if (!c.tls.ca.empty() || !c.tls.cert.empty() || c.url.rfind("tls://", 0) == 0) {
      natsOptions_SetSecure(opts_, true);
      if (!c.tls.ca.empty() &&
          (s = natsOptions_LoadCATrustedCertificates(opts_, c.tls.ca.c_str())) != NATS_OK) {
        return fail("tls.ca " + c.tls.ca);
      }
      if (!c.tls.cert.empty() && (s = natsOptions_LoadCertificatesChain(
                                      opts_, c.tls.cert.c_str(), c.tls.key.c_str())) != NATS_OK) {
        return fail("tls.cert/key");
      }
    }
    s = natsConnection_Connect(&nc_, opts_);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) return fail("connecting to " + c.url);
    if (s == NATS_OK && on_state_) on_state_(true);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    if ((s = natsConnection_JetStream(&js_, nc_, &jo)) != NATS_OK) return fail("JetStream context");
    // A second context for pipelined publishes: its acks come to OnAck on a libnats thread.
    jsOptions ja;
    jsOptions_Init(&ja);
    ja.Wait = 5000;
    ja.PublishAsync.MaxPending = 65536;
    ja.PublishAsync.AckHandler = &OnAck;
    ja.PublishAsync.AckHandlerClosure = this;
    if ((s = natsConnection_JetStream(&js_async_, nc_, &ja)) != NATS_OK) {
      return fail("JetStream context");
    }
    return Status::Ok();
  }

  static void OnAck(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    auto* self = static_cast<NatsJetStream*>(closure);
    PublishCallback done;
    {
      std::lock_guard<std::mutex> lock(self->pending_mu_);
      auto it = self->pending_.find(msg);
      if (it != self->pending_.end()) {
        done = std::move(it->second);
        self->pending_.erase(it);
      }
    }
    Result<PubAck> result = Status::Ok();
    if (pa != nullptr) {
      result = PubAck{pa->Sequence, pa->Duplicate};
    } else {
      natsStatus err = pae ? pae->Err : NATS_ERR;
      std::string text = natsStatus_GetText(err);
      if (pae && pae->ErrText && *pae->ErrText) text += std::string(": ") + pae->ErrText;
      result = PublishError(err, pae ? pae->ErrCode : static_cast<jsErrCode>(0), text,
                            natsMsg_GetSubject(msg));
    }
    natsMsg_Destroy(msg);
    if (done) done(std::move(result));
  }

  // Answers every publish still waiting for its ack (the connection is gone).
  void FailPending(const std::string& why) {
    std::unordered_map<natsMsg*, PublishCallback> pending;
    {
      std::lock_guard<std::mutex> lock(pending_mu_);
      pending.swap(pending_);
    }
    for (auto& [msg, done] : pending) done(Unavailable(why, /*outcome_unknown=*/true));
  }

  bool connected() const override {
    return natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED;
  }

  std::string last_error() const override {
    const char* text = nullptr;
    if (natsConnection_GetLastError(nc_, &text) == NATS_OK || text == nullptr) return "";
    return text;
  }

  int64_t max_payload() const override { return natsConnection_GetMaxPayload(nc_); }

  Result<PubAck> Publish(const std::string& subject, const std::string& msg_id, uint64_t expected,
                         const std::string& content_type, const std::string& payload,
                         int timeout_ms) override {
    if (!connected()) return Unavailable("not connected to NATS; nothing was sent");
    natsMsg* raw = nullptr;
    natsStatus s = natsMsg_Create(&raw, subject.c_str(), nullptr, payload.data(),
                                  static_cast<int>(payload.size()));
    if (s != NATS_OK) return Status::Internal("nats: creating a message: " + LastError(s));
    MsgPtr msg(raw);
    SetPublishHeaders(raw, msg_id, expected, content_type);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = timeout_ms;
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = js_PublishMsg(&pa, js_, raw, &po, &jerr);
    if (s == NATS_OK) {
      PubAck out{pa->Sequence, pa->Duplicate};
      jsPubAck_Destroy(pa);
      return out;
    }
    return PublishError(s, jerr, LastError(s), subject);
  }

  void PublishAsync(const std::string& subject, const std::string& msg_id, uint64_t expected,
                    const std::string& content_type, const std::string& payload, int timeout_ms,
                    PublishCallback done) override {
    if (!connected()) {
      done(Unavailable("not connected to NATS; nothing was sent"));
      return;
    }
    natsMsg* raw = nullptr;
    natsStatus s = natsMsg_Create(&raw, subject.c_str(), nullptr, payload.data(),
                                  static_cast<int>(payload.size()));
    if (s != NATS_OK) {
      done(Status::Internal("nats: creating a message: " + LastError(s)));
      return;
    }
    SetPublishHeaders(raw, msg_id, expected, content_type);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = timeout_ms;  // libnats answers OnAck with a timeout after this long
    {
      std::lock_guard<std::mutex> lock(pending_mu_);
      pending_[raw] = std::move(done);
    }
    natsMsg* owned = raw;
    s = js_PublishMsgAsync(js_async_, &owned, &po);
    if (s == NATS_OK) return;
    PublishCallback failed;
    {
      std::lock_guard<std::mutex> lock(pending_mu_);
      auto it = pending_.find(raw);
      if (it != pending_.end()) {
        failed = std::move(it->second);
        pending_.erase(it);
      }
    }
    natsMsg_Destroy(owned);  // no-op when libnats kept it
    if (failed) {
      failed(Unavailable("publishing to JetStream: " + LastError(s),
                         /*outcome_unknown=*/owned == nullptr));
    }
  }

  Result<JetStreamInfo> Info(const std::string& stream) override {
    // Not connected, libnats could answer "not found" from a timeout; never let a caller
    // mistake an outage for a deleted stream.
    if (!connected()) return Unavailable("not connected to NATS; stream info of " + stream);
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    // A short wait: while a cluster elects a leader, callers (the replication monitor) would
    // rather retry than block.
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = 2000;
    natsStatus s = js_GetStreamInfo(&si, js_, stream.c_str(), &o, &jerr);
    if (s == NATS_NOT_FOUND)
      return Status::NotFound("JetStream stream " + stream + " does not exist");
    if (s != NATS_OK) return Unavailable("stream info of " + stream + ": " + LastError(s));
    JetStreamInfo info;
    const jsStreamConfig* cfg = si->Config;
    if (cfg) {
      info.config.name = cfg->Name ? cfg->Name : stream;
      for (int i = 0; i < cfg->SubjectsLen; ++i)
        info.config.subjects.emplace_back(cfg->Subjects[i]);
      info.config.max_age_ns = cfg->MaxAge;
      info.config.max_bytes = cfg->MaxBytes;
      info.config.max_msgs = cfg->MaxMsgs;
      info.config.discard_new = cfg->Discard == js_DiscardNew;
      info.config.replicas = static_cast<int>(cfg->Replicas);
      info.config.memory_storage = cfg->Storage == js_MemoryStorage;
      info.config.duplicate_window_ns = cfg->Duplicates;
    }
    info.created_ns = si->Created;
    info.first_seq = si->State.FirstSeq;
    info.last_seq = si->State.LastSeq;
    info.messages = si->State.Msgs;
    info.bytes = static_cast<int64_t>(si->State.Bytes);
    jsStreamInfo_Destroy(si);
    return info;
  }

  Status CreateStream(const JetStreamConfig& config) override {
    return AddOrUpdate(config, /*update=*/false);
  }

  Status UpdateStream(const JetStreamConfig& config) override {
    return AddOrUpdate(config, /*update=*/true);
  }

  Status AddOrUpdate(const JetStreamConfig& c, bool update) {
    const char* verb = update ? "updating" : "creating";
    if (!connected())
      return Unavailable(std::string("not connected to NATS; ") + verb + " " + c.name);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = c.name.c_str();
    std::vector<const char*> subjects;
    for (const auto& s : c.subjects) subjects.push_back(s.c_str());
    cfg.Subjects = subjects.data();
    cfg.SubjectsLen = static_cast<int>(subjects.size());
    cfg.Storage = c.memory_storage ? js_MemoryStorage : js_FileStorage;
    cfg.Retention = js_LimitsPolicy;
    cfg.MaxAge = c.max_age_ns;
    cfg.MaxBytes = c.max_bytes;
    cfg.MaxMsgs = c.max_msgs;
    cfg.Discard = c.discard_new ? js_DiscardNew : js_DiscardOld;
    cfg.Replicas = static_cast<int64_t>(c.replicas);
    cfg.Duplicates = c.duplicate_window_ns;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = update ? js_UpdateStream(&si, js_, &cfg, nullptr, &jerr)
                          : js_AddStream(&si, js_, &cfg, nullptr, &jerr);
    if (si) jsStreamInfo_Destroy(si);
    if (s == NATS_OK) return Status::Ok();
    std::string text = LastError(s);
    if (static_cast<int>(jerr) != 0) {
      return Status::Invalid("JetStream refused " + std::string(verb) + " stream " + c.name +
                             " (error " + std::to_string(static_cast<int>(jerr)) + "): " + text);
    }
    return Unavailable(std::string(verb) + " JetStream stream " + c.name + ": " + text);
  }

  Status DeleteStream(const std::string& stream) override {
    if (!connected()) return Unavailable("not connected to NATS; deleting " + stream);
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_DeleteStream(js_, stream.c_str(), nullptr, &jerr);
    if (s != NATS_OK && s != NATS_NOT_FOUND) {
      return Unavailable("deleting JetStream stream " + stream + ": " + LastError(s));
    }
    return Status::Ok();
  }

  Result<std::string> Request(const std::string& subject, const std::string& payload,
                              int timeout_ms) override {
    if (!connected()) return Unavailable("not connected to NATS; requesting " + subject);
    natsMsg* reply = nullptr;
    natsStatus s = natsConnection_Request(&reply, nc_, subject.c_str(), payload.data(),
                                          static_cast<int>(payload.size()), timeout_ms);
    if (s != NATS_OK) return Unavailable("request on " + subject + ": " + LastError(s));
    std::string data(natsMsg_GetData(reply), static_cast<size_t>(natsMsg_GetDataLength(reply)));
    natsMsg_Destroy(reply);
    return data;
  }

  Result<std::vector<JetStreamMessage>> FetchSubject(const std::string& stream,
                                                     const std::string& subject,
                                                     uint64_t after) override {
    std::vector<JetStreamMessage> out;
    natsMsg* last = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_GetLastMsg(&last, js_, stream.c_str(), subject.c_str(), nullptr, &jerr);
    if (s == NATS_NOT_FOUND) return out;  // the subject is empty
    if (s != NATS_OK) return Unavailable("reading " + subject + ": " + LastError(s));
    uint64_t last_seq = natsMsg_GetSequence(last);
    if (last_seq <= after) {
      natsMsg_Destroy(last);
      return out;
    }
    if (last_seq == after + 1 || after == 0) {
      // Common case after a conflict: exactly one new commit. (after == 0 falls through below
      // when there may be more.)
      if (last_seq == after + 1) {
        out.push_back(Decode(last));
        out.back().seq = last_seq;
        natsMsg_Destroy(last);
        return out;
      }
    }
    natsMsg_Destroy(last);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = after + 1;
    natsSubscription* sub = nullptr;
    s = js_SubscribeSync(&sub, js_, subject.c_str(), nullptr, &so, &jerr);
    if (s != NATS_OK) return Unavailable("fetching " + subject + ": " + LastError(s));
    for (;;) {
      natsMsg* msg = nullptr;
      s = natsSubscription_NextMsg(&msg, sub, 5000);
      if (s != NATS_OK) break;
      MsgPtr owned(msg);
      out.push_back(Decode(msg));
      if (out.back().seq >= last_seq) break;
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    if (out.empty() || out.back().seq < last_seq) {
      return Unavailable("fetching " + subject + ": timed out after " + std::to_string(out.size()) +
                         " messages");
    }
    return out;
  }

  Result<std::unique_ptr<JetStreamFollower>> Follow(
      const std::string& stream, const std::string& subjects, uint64_t start,
      std::function<void(JetStreamMessage)> fn) override {
    auto f = std::make_unique<Follower>();
    f->fn_ = std::move(fn);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = start;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_Subscribe(&f->sub_, js_, subjects.c_str(), &Follower::OnMsg, f.get(), nullptr,
                                &so, &jerr);
    if (s != NATS_OK) return Unavailable("following " + stream + ": " + LastError(s));
    return std::unique_ptr<JetStreamFollower>(std::move(f));
  }

  Result<std::unique_ptr<JetStreamDurable>> Durable(const std::string& stream,
                                                    const std::string& subjects,
                                                    const std::string& name, int64_t ack_wait_ms,
                                                    int max_ack_pending) override {
    if (!connected()) return Unavailable("not connected to NATS; consumer " + name);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = name.c_str();
    cc.FilterSubject = subjects.c_str();
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = ack_wait_ms * 1000 * 1000;
    cc.MaxAckPending = max_ack_pending;
    cc.DeliverPolicy = js_DeliverAll;
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    // Creating an existing consumer with the same configuration is fine; one made with another
    // configuration is used as it is.
    natsStatus s = js_AddConsumer(&ci, js_, stream.c_str(), &cc, nullptr, &jerr);
    if (ci) jsConsumerInfo_Destroy(ci);
    if (s != NATS_OK && jerr != JSConsumerNameExistErr && jerr != JSConsumerExistingActiveErr) {
      // 10148: exists with another configuration; anything else is a real failure.
      if (jerr != static_cast<jsErrCode>(10148)) {
        return Unavailable("creating consumer " + name + " on " + stream + ": " + LastError(s));
      }
    }
    auto d = std::make_unique<DurableConsumer>();
    d->js_ = js_;
    d->stream_ = stream;
    d->name_ = name;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Consumer = name.c_str();
    s = js_PullSubscribe(&d->sub_, js_, subjects.c_str(), name.c_str(), nullptr, &so, &jerr);
    if (s != NATS_OK) return Unavailable("binding to consumer " + name + ": " + LastError(s));
    return std::unique_ptr<JetStreamDurable>(std::move(d));
  }

  Result<std::unique_ptr<JetStreamPuller>> Pull(const std::string& stream,
                                                const std::string& subjects,
                                                uint64_t start) override {
    if (!connected()) return Unavailable("not connected to NATS; pulling from " + stream);
    auto p = std::make_unique<Puller>();
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = start;
    so.Config.AckPolicy = js_AckNone;
    so.Config.InactiveThreshold = 30LL * 1000 * 1000 * 1000;  // no consumer outlives its reader
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_PullSubscribe(&p->sub_, js_, subjects.c_str(), nullptr, nullptr, &so, &jerr);
    if (s != NATS_OK) return Unavailable("pulling from " + stream + ": " + LastError(s));
    return std::unique_ptr<JetStreamPuller>(std::move(p));
  }

 private:
  natsOptions* opts_ = nullptr;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  jsCtx* js_async_ = nullptr;
  std::mutex pending_mu_;
  std::unordered_map<natsMsg*, PublishCallback> pending_;  // async publishes awaiting their ack
  std::function<void(bool)> on_state_;
  std::atomic<bool> closing_{false};
  std::mutex closed_mu_;
  std::condition_variable closed_cv_;
  bool closed_ = false;
};

}  // namespace

Status JetStream::CreateStream(const std::string& stream, const std::string& subjects) {
  JetStreamConfig config;
  config.name = stream;
  config.subjects = {subjects};
  return CreateStream(config);
}

Result<std::unique_ptr<JetStream>> JetStream::Connect(const NatsConfig& config,
                                                      std::function<void(bool)> on_state) {
  auto js = std::make_unique<NatsJetStream>();
  if (auto s = js->Open(config, std::move(on_state)); !s.ok()) return s;
  return std::unique_ptr<JetStream>(std::move(js));
}

}  // namespace sidelog
