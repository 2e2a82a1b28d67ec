// SubscriptionStore: what push deliveries remember in the pod (docs/subscriptions.md), in a
// SQLite file beside the event log:
//  - per subscription, its position when it is kept locally (standalone mode, `group: pod`):
//    every event of the commits up to `position` is done, and `acked` lists the events done
//    in later commits (deliveries to different entities finish out of order);
//  - its parked events: delivered `maxAttempts` times, or refused by the app, with the last
//    error, until replayed or discarded.
//
// Thread-safe (one connection behind a mutex). A write survives a crash of the process once it
// returns (WAL, synchronous=NORMAL), as the replicated event log does.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "sidelog/event.h"
#include "sidelog/status.h"

namespace sidelog {

// An event's place in its stream: (commit position, index in the commit).
using EventKey = std::pair<int64_t, int32_t>;

struct ParkedEvent {
  int64_t id = 0;  // assigned by the store
  std::string subscription;
  EventKey key;
  std::string entity;
  std::string event_id;
  std::string type;
  int attempts = 0;
  std::string last_error;
  TimeMicros parked_at = 0;
};

struct SubscriptionPosition {
  int64_t position = 0;      // every event of the commits <= position is done
  std::set<EventKey> acked;  // done, in commits > position
  std::string identity;      // the stream identity the position belongs to ("" when new)
};

class SubscriptionStore {
 public:
  static Result<std::unique_ptr<SubscriptionStore>> Open(const std::string& path);
  ~SubscriptionStore();

  // The recorded position; position 0 and no identity for a new subscription.
  Result<SubscriptionPosition> Load(const std::string& subscription);

  struct Update {
    std::optional<int64_t> position;    // the new position, when it moved
    std::vector<EventKey> acked;        // events done above the (new) position
    std::vector<ParkedEvent> park;      // new parked events (their ids are assigned)
    std::vector<int64_t> unpark;        // parked events delivered by a replay
    std::vector<ParkedEvent> reparked;  // parked events that failed their replay (by id)
    std::optional<std::string> identity;
  };
  // Applies everything in one transaction. Acked entries at or below the position go.
  Status Apply(const std::string& subscription, const Update& update);

  // Parked events with id > `after`, oldest first, at most `limit`.
  Result<std::vector<ParkedEvent>> Parked(const std::string& subscription, int64_t after,
                                          int limit);
  Result<std::optional<ParkedEvent>> FindParked(const std::string& subscription, int64_t id);
  int64_t ParkedCount(const std::string& subscription);
  // NotFound when there is no such parked event.
  Status Discard(const std::string& subscription, int64_t id);
  // Forgets the subscription's position and acked events (parked events stay).
  Status Reset(const std::string& subscription);

  class Impl;

 private:
  explicit SubscriptionStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sidelog
