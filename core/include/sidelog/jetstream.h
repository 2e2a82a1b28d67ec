// JetStream: the only door to libnats. A connection with JetStream context, conditional
// publishes, stream info, per-subject fetches and ordered consumers, with errors as Status.
//
// Thread-safe: libnats connections may be used from any thread. Callbacks of a Follow run on a
// libnats thread, one message at a time, in stream order.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sidelog/config.h"
#include "sidelog/status.h"

namespace sidelog {

struct JetStreamMessage {
  uint64_t seq = 0;  // the stream sequence: Sidelog's position
  std::string subject;
  std::string msg_id;  // Nats-Msg-Id: the commit id
  std::string data;
};

struct PubAck {
  uint64_t seq = 0;
  bool duplicate = false;
};

// The part of a JetStream stream's configuration that Sidelog manages. Limits of -1 (and a
// max_age of 0) mean unlimited, as in JetStream.
struct JetStreamConfig {
  std::string name;
  std::vector<std::string> subjects;
  int64_t max_age_ns = 0;
  int64_t max_bytes = -1;
  int64_t max_msgs = -1;
  bool discard_new = false;  // refuse new messages at a limit instead of removing old ones
  int replicas = 1;
  bool memory_storage = false;
  int64_t duplicate_window_ns = 0;  // 0: the server's default (2m)

  bool operator==(const JetStreamConfig&) const = default;
};

struct JetStreamInfo {
  JetStreamConfig config;
  int64_t created_ns = 0;  // identity of the stream: changes when it is deleted and recreated
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  uint64_t messages = 0;
  int64_t bytes = 0;
};

// A live ordered consumer; destroying it unsubscribes.
class JetStreamFollower {
 public:
  virtual ~JetStreamFollower() = default;
  // Delivers nothing more, at once, and waits for a delivery in progress; destruction (which
  // deletes the consumer and may wait for JetStream) can come later.
  virtual void Stop() = 0;
};

// A pull consumer: ephemeral, acknowledging nothing, removed by the server after 30 s without
// a fetch. Not thread-safe: one reader fetches.
class JetStreamPuller {
 public:
  virtual ~JetStreamPuller() = default;
  // Up to `batch` messages in stream order, waiting at most `wait_ms` for the first; empty when
  // none came. Unavailable when the consumer is gone (NATS restarted, or no fetch for 30 s):
  // make a new one from the next sequence.
  virtual Result<std::vector<JetStreamMessage>> Fetch(int batch, int wait_ms) = 0;
};

// A durable pull consumer with explicit acknowledgement, shared by every reader that binds to
// its name: JetStream gives each message to one of them and redelivers what is not
// acknowledged within the ack wait. The consumer (and its position) lives on the server and
// outlives the readers. Thread-safe.
class JetStreamDurable {
 public:
  virtual ~JetStreamDurable() = default;
  // Up to `batch` messages (their `data` is left empty: the log has them), waiting at most
  // `wait_ms`; empty when none came. Unavailable when NATS cannot be asked.
  virtual Result<std::vector<uint64_t>> Fetch(int batch, int wait_ms) = 0;
  // Done with the message at stream sequence `seq`: JetStream will not deliver it again.
  virtual void Ack(uint64_t seq) = 0;
  // Still working on it: restarts its ack wait.
  virtual void InProgress(uint64_t seq) = 0;
  struct Info {
    uint64_t ack_floor = 0;   // every message up to this stream sequence is acknowledged
    uint64_t pending = 0;     // messages not delivered to any reader yet
    int64_t ack_pending = 0;  // delivered, not acknowledged
  };
  virtual Result<Info> GetInfo() = 0;
};

class JetStream {
 public:
  // Connects (retrying in the background when the server is down: the call does not fail for
  // that). `on_state(connected)` runs on libnats threads at every connect/disconnect.
  static Result<std::unique_ptr<JetStream>> Connect(const NatsConfig& config,
                                                    std::function<void(bool)> on_state);
  virtual ~JetStream() = default;

  virtual bool connected() const = 0;
  // What the server or the transport last refused ("Authorization Violation", a TLS
  // handshake error), or "" when nothing has gone wrong.
  virtual std::string last_error() const = 0;
  virtual int64_t max_payload() const = 0;

  using PublishCallback = std::function<void(Result<PubAck>)>;

  // Publishes `payload` on `subject` with Nats-Msg-Id and, always,
  // Nats-Expected-Last-Subject-Sequence (0: the subject must be empty).
  //  - Conflict, with context().current_version = the subject's last sequence, on error 10071;
  //  - Unavailable with outcome_unknown = false when nothing was sent (not connected);
  //  - Unavailable with outcome_unknown = true on a timeout or a lost connection after sending.
  virtual Result<PubAck> Publish(const std::string& subject, const std::string& msg_id,
                                 uint64_t expected_last_subject_seq,
                                 const std::string& content_type, const std::string& payload,
                                 int timeout_ms) = 0;
  // The same without waiting: many publishes are in flight at once and `done` gets each
  // outcome, as Publish would return it, on a libnats thread (or at once when nothing was
  // sent). A missing ack is a timeout after `timeout_ms`.
  virtual void PublishAsync(const std::string& subject, const std::string& msg_id,
                            uint64_t expected_last_subject_seq, const std::string& content_type,
                            const std::string& payload, int timeout_ms, PublishCallback done) = 0;

  // NotFound when the stream does not exist.
  virtual Result<JetStreamInfo> Info(const std::string& stream) = 0;
  // A file stream with default limits: the sidecar's dev mode (nats.createStreams).
  Status CreateStream(const std::string& stream, const std::string& subjects);
  // Creates or updates a stream. Invalid (with JetStream's own words) when JetStream refuses
  // the configuration or the change; Unavailable when NATS cannot be asked.
  virtual Status CreateStream(const JetStreamConfig& config) = 0;
  virtual Status UpdateStream(const JetStreamConfig& config) = 0;
  // Ok also when the stream does not exist.
  virtual Status DeleteStream(const std::string& stream) = 0;

  // A plain NATS request (no JetStream): the reply's payload, or Unavailable when nothing
  // answers within `timeout_ms`, when not connected, or when the server refuses the subject.
  virtual Result<std::string> Request(const std::string& subject, const std::string& payload,
                                      int timeout_ms) = 0;

  // Every message on `subject` after sequence `after`, in order.
  virtual Result<std::vector<JetStreamMessage>> FetchSubject(const std::string& stream,
                                                             const std::string& subject,
                                                             uint64_t after) = 0;

  // An ordered consumer on `stream` (subjects `subjects`) from sequence `start` (>= 1). `fn`
  // gets every message in order; libnats recreates the consumer after gaps and reconnects.
  virtual Result<std::unique_ptr<JetStreamFollower>> Follow(
      const std::string& stream, const std::string& subjects, uint64_t start,
      std::function<void(JetStreamMessage)> fn) = 0;

  // Creates (or binds to) the durable consumer `name` on `stream`, filtered to `subjects`,
  // delivering from the stream's first message, with `ack_wait_ms` and at most
  // `max_ack_pending` messages unacknowledged across its readers.
  virtual Result<std::unique_ptr<JetStreamDurable>> Durable(const std::string& stream,
                                                            const std::string& subjects,
                                                            const std::string& name,
                                                            int64_t ack_wait_ms,
                                                            int max_ack_pending) = 0;

  // A pull consumer on `stream` (subjects `subjects`) from sequence `start` (>= 1).
  virtual Result<std::unique_ptr<JetStreamPuller>> Pull(const std::string& stream,
                                                        const std::string& subjects,
                                                        uint64_t start) = 0;
};

// What a publish that did not get a PubAck means, as Publish documents it. `no_responders`: no
// stream listens on the subject (nothing was stored); `js_error`: the JetStream API error code
// of the refusal, 0 when there was none (a timeout or a lost connection: outcome unknown).
// 10071/10164 (lost the race for the subject) are Conflict; transient cluster refusals are
// Unavailable; 10158 (this commit still in process) is Unavailable with an unknown outcome;
// 10054 (above the stream's max_msg_size) is TooLarge; other codes are Internal.
Status PublishFailure(bool no_responders, int js_error, const std::string& text,
                      const std::string& subject);

}  // namespace sidelog
