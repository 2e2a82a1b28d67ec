// Folding: the rules an EventStream declares for its entities (DESIGN.md "Folding"), and how an
// entity's events fold into its state.
//
//  - Reducers per event type: merge (RFC 7386, the default), set, unset, increment, append,
//    delete; paths are RFC 6901 pointers into the state, `from` points into the event's data.
//  - An optional state machine (initial state, transitions {event, from, to}, strict) enforced
//    at append.
//  - Optional JSON Schemas per event type, enforced at append.
//
// Rules are checked at append only (Mode::kAppend). Folding stored events (Mode::kReplay) never
// re-validates: an op that no longer fits is skipped, so changing rules never makes history
// unreadable. A Rules object is immutable after Compile and safe to share across threads.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sidelog/event.h"
#include "sidelog/status.h"

namespace sidelog {

// An entity's folded state at some version.
struct EntityState {
  Json state = Json::object();
  std::string status;    // state machine state; empty when the stream has no state machine
  bool deleted = false;  // a `delete` reducer ran
  int64_t version = 0;   // 0: no events yet
  TimeMicros updated_at = 0;
  int64_t position = 0;  // stream position of the commit that holds `version` (the log sets it)
};

class Rules {
 public:
  enum class Mode { kAppend, kReplay };

  // A deprecated spelling that Compile accepted. `field` is a JSON pointer into `entity`
  // (e.g. "/stateMachine/transitions/0/on"); `message` says what to write instead.
  struct Deprecation {
    std::string field;
    std::string message;
  };

  // Compiles `entity` = {reducers?, stateMachine?, schemas?} (null or {} means no rules).
  // On error the status is Invalid, its message names the field, and context().rule holds the
  // field as a JSON pointer into `entity` (e.g. "/reducers/ItemAdded/0/op").
  //
  // A transition may name its event type with `on`, a deprecated alias of `event` (YAML 1.1
  // readers such as kubectl take a bare `on` for the boolean true). The rules then read as if
  // written with `event`: spec() and hash() are the same, and deprecations() lists each use.
  // A transition with both `on` and `event` is Invalid.
  static Result<std::shared_ptr<const Rules>> Compile(const Json& entity);

  // No rules at all: every event merges its data.
  static std::shared_ptr<const Rules> Default();

  // Hex SHA-256 of the canonical rules: snapshots are keyed by it.
  const std::string& hash() const { return hash_; }
  // The rules as declared, with deprecated spellings replaced (`on` written as `event`).
  const Json& spec() const { return spec_; }
  // The deprecated spellings in the declared rules, in order; empty for current ones.
  const std::vector<Deprecation>& deprecations() const { return deprecations_; }
  bool has_state_machine() const { return has_state_machine_; }
  const std::string& initial_status() const { return initial_; }

  // An empty entity as the rules start it (status = the state machine's initial state).
  EntityState Initial() const;

  // Checks the event's data against its type's JSON Schema, if any. Rejected on failure.
  Status ValidateSchema(const std::string& type, const Json& data) const;

  // Applies one event to `entity` in place: the state machine, then the reducers.
  // kAppend: a refused transition or an op that does not fit returns Rejected, and `entity` may
  // then be partially changed (callers fold into a copy or discard it).
  // kReplay: never fails; an op that does not fit is skipped.
  Status Apply(EntityState* entity, const std::string& type, const Json& data, Mode mode) const;

  struct Op;
  struct Transition {
    std::string event;  // the event type
    std::vector<std::string> from;
    std::string to;
  };

  Rules();
  ~Rules();

 private:
  Status ApplyOp(const Op& op, EntityState* entity, const std::string& type, const Json& data,
                 Mode mode) const;

  Json spec_;
  std::string hash_;
  std::vector<Deprecation> deprecations_;
  std::map<std::string, std::vector<Op>> reducers_;
  bool has_state_machine_ = false;
  bool strict_ = false;
  std::string initial_;
  std::map<std::string, std::vector<Transition>> transitions_;  // by event type
  struct Schemas;
  std::unique_ptr<Schemas> schemas_;
};

}  // namespace sidelog
