// Validation of the names of DESIGN.md ("Naming") and the entity subject encoding.
// Each validator returns Ok or an Invalid status whose message names the rule that was broken.
// All functions are pure and safe from any thread.
#pragma once

#include <string>
#include <string_view>

#include "sidelog/status.h"

namespace sidelog {

// A stream name is a DNS-1123 label: 1-63 of [a-z0-9-], starting and ending alphanumeric.
Status ValidateStreamName(std::string_view name);

// An entity id is 1-200 bytes of printable ASCII without whitespace, '/', '*' or '>'.
Status ValidateEntityId(std::string_view id);

// An event type matches [A-Za-z][A-Za-z0-9._-]{0,127}.
Status ValidateEventType(std::string_view type);

// An event id is 1-128 bytes of printable ASCII without whitespace.
Status ValidateEventId(std::string_view id);

// A metadata key becomes a CloudEvents extension attribute: 1-20 of [a-z0-9], and not a
// CloudEvents or Sidelog attribute name (id, type, time, sidelogversion, ...).
// A metadata value is a string of at most 4096 bytes.
Status ValidateMetadataKey(std::string_view key);
Status ValidateMetadataValue(std::string_view key, std::string_view value);

// True when `s` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
// On false, *bad_offset is the offset of the first bad byte.
bool IsValidUtf8(std::string_view s, size_t* bad_offset = nullptr);

// The entity subject token: every byte outside [A-Za-z0-9_-] written as %XX (uppercase hex).
std::string EncodeSubjectToken(std::string_view entity_id);
// The inverse; returns false on a malformed token.
bool DecodeSubjectToken(std::string_view token, std::string* entity_id);

// "SIDELOG_<namespace>_<stream>" and "sidelog.<namespace>.<stream>.<token>".
std::string JetStreamName(std::string_view ns, std::string_view stream);
// The subjects of a stream's JetStream stream: sidelog.<namespace>.<stream>.>
std::string StreamSubjects(std::string_view ns, std::string_view stream);
std::string EntitySubject(std::string_view ns, std::string_view stream, std::string_view entity);

// The inbox prefix of a client's NATS connection, where its replies and push consumers'
// messages arrive; its NATS identity may subscribe only below it (docs/security.md):
// _INBOX.sidelog.<namespace>.svc.<service> and _INBOX.sidelog.<namespace>.con.<consolidator>.
std::string SidecarInboxPrefix(std::string_view ns, std::string_view service);
std::string ConsolidatorInboxPrefix(std::string_view ns, std::string_view consolidator);

}  // namespace sidelog
