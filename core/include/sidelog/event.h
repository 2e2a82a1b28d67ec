// The event model and its CloudEvents 1.0 envelope (structured JSON mode, DESIGN.md "Event
// envelope"). Plain value types: copy freely, share across threads read-only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sidelog/status.h"

namespace sidelog {

using Json = nlohmann::json;
using Metadata = std::map<std::string, std::string>;

// Microseconds since the Unix epoch, UTC.
using TimeMicros = int64_t;

// One event as a client submits it. An empty id is generated at append (UUIDv7).
struct EventInput {
  std::string id;
  std::string type;
  Json data;  // any JSON value; null when absent
  Metadata metadata;
  bool id_generated = false;  // set by the log when it generated the id (never a replay)
};

// One event as the log stores it.
struct StoredEvent {
  std::string id;
  std::string stream;
  std::string entity;
  std::string type;
  std::string source;  // "/namespaces/<ns>/services/<service>"
  Json data;
  Metadata metadata;
  int64_t version = 0;   // the entity's version after this event
  int64_t position = 0;  // the stream position of the commit that carried it
  int32_t index = 0;     // its place in that commit
  TimeMicros time = 0;
  std::string state;  // the state machine's state after this event; empty without one
};

// Validates the client-controlled parts of one event (id if set, type, metadata).
// `where` prefixes the message, e.g. "events[2]".
Status ValidateEventInput(const EventInput& event, const std::string& where);

// The CloudEvents structured-JSON form of a stored event, with the position attributes.
Json ToCloudEvent(const StoredEvent& event);

// The inverse, for events received from replication or tests. Position and index are optional
// in the input (the published form has none); stream/entity come from `sidelogstream`/`subject`.
Result<StoredEvent> FromCloudEvent(const Json& cloud_event);

// Canonical content of an event for idempotency comparison: type, data and metadata as
// canonical JSON (sorted keys, no whitespace).
std::string CanonicalContent(const std::string& type, const Json& data, const Metadata& metadata);

// Lowercase hex SHA-256 of `bytes`.
std::string Sha256Hex(const std::string& bytes);

// The commit id: lowercase hex SHA-256 over the stream, the entity and the ordered event ids,
// each followed by a NUL byte. Part of the wire format (Nats-Msg-Id).
std::string CommitId(const std::string& stream, const std::string& entity,
                     const std::vector<std::string>& event_ids);

// A new UUIDv7 ("018f...-7...") string: time-ordered, 73 random bits. The top bit of its
// 62-bit random tail is clear, so UuidPlus(id, k) stays a valid UUIDv7 for any k < 2^61.
std::string NewUuidV7();

// `id` + k, as 128-bit numbers; `id` must be a canonical UUID (IsCanonicalUuid).
std::string UuidPlus(std::string_view id, uint64_t k);

// first, first + 1, ..., first + n - 1 (`first` canonical): the ids of a commit of n events
// when the log generates them, UuidRun(NewUuidV7(), n).
std::vector<std::string> UuidRun(std::string_view first, size_t n);

// True when there are at least two ids and each is a canonical UUID equal to the first + its
// index.
bool IsUuidRun(const std::vector<std::string_view>& ids);

// True for a UUID in canonical form: 36 characters, lowercase hex, dashes at 8, 13, 18, 23.
// Their text order is their numeric order.
bool IsCanonicalUuid(std::string_view id);

// id - first, when both are canonical UUIDs and 0 <= id - first < 2^62.
std::optional<uint64_t> UuidOffset(std::string_view first, std::string_view id);

// Wall clock in microseconds since the epoch.
TimeMicros NowMicros();

// RFC 3339 in UTC with microseconds: "2026-11-26T10:00:00.123456Z".
std::string FormatTime(TimeMicros t);

// Parses RFC 3339 ("Z" or a numeric offset, 0-9 fractional digits). Invalid on failure.
Result<TimeMicros> ParseTime(const std::string& text);

// The CloudEvents `source` of a service.
std::string ServiceSource(const std::string& ns, const std::string& service);

}  // namespace sidelog
