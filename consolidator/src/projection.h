// Projection: the config's handlers compiled against one read-write connection, folding batches
// of events into the read model exactly once.
//
// Exactly once: a batch's handler statements and its source's checkpoint row
// (sidelog_checkpoints: source, position, "index", events) commit in one transaction. The
// checkpoint names the last event applied (index -1: a whole commit), so a crash at any point
// leaves rows and checkpoint agreeing, and reading resumes right after the checkpoint.
//
// Handler errors (the database rejected a statement for an event):
//   onError: stop  the events before the failing one commit with their checkpoint, and Apply
//                  reports the failing event; the source stops there.
//   onError: skip  the failing event is written to sidelog_dead_letters (with the error and the
//                  event as a CloudEvent) in the transaction that moves the checkpoint past it.
// Transient errors (connection lost, database busy) roll back the batch; Apply reports
// Unavailable and the next Apply reconnects.
//
// Safe from several threads: Apply calls are serialized.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "cursor.h"
#include "db.h"
#include "event_parameter.h"
#include "sidelog/event.h"

namespace sidelog::consolidator {

struct Checkpoint {
  Cursor cursor;
  int64_t events = 0;  // events of the source read up to the cursor (with or without a handler)
};

// Events of one source, in order, all after its checkpoint. `end` is the cursor to store when
// the whole batch is applied: the last event's, or further when the reader knows that the
// events up to there were all read (the end of a catch-up page).
struct Batch {
  std::string source;
  std::vector<StoredEvent> events;
  Cursor end;
};

struct ApplyResult {
  Checkpoint checkpoint;      // as committed (unchanged when nothing committed)
  int64_t handled = 0;        // events that ran a handler and committed
  int64_t skipped = 0;        // events without a handler (or not in the source's types)
  int64_t dead_lettered = 0;  // onError: skip
  Status error;               // Rejected: a handler failed (onError: stop); Unavailable
  std::optional<StoredEvent> failed_event;  // with Rejected: the event the source stops at
};

// The hash of what a read model is built from: its sources (streams and types), schema and
// handlers. Recorded in sidelog_meta ("projection"); a consolidator that starts with another
// one rebuilds before it folds.
std::string ProjectionHashOf(const ConsolidatorConfig& config);

// The hash recorded in a slot's sidelog_meta, "" when none is (a fresh database, or one from
// before hashes were recorded), read without applying the config's schema.
Result<std::string> RecordedProjectionHash(Db& db);

class Projection {
 public:
  using Connect = std::function<Result<std::unique_ptr<Db>>()>;

  // Connects, applies the schema's DDL (it must be idempotent: it runs at every start),
  // creates the checkpoint and dead-letter tables, and prepares every handler statement.
  // Invalid with the config's file:line when the DDL fails or a statement does not prepare;
  // Unavailable when the database cannot be reached.
  static Result<std::unique_ptr<Projection>> Open(const ConsolidatorConfig& config,
                                                  Connect connect);

  // The source's checkpoint; position 0 when it has none.
  Result<Checkpoint> LoadCheckpoint(const std::string& source);

  // The identity of the stream the source's checkpoint belongs to (StreamStats::identity), as
  // recorded in sidelog_sources; "" when none is recorded.
  Result<std::string> LoadIdentity(const std::string& source);
  // Records it (in its own transaction: it describes the checkpoint, it does not move it).
  Status SaveIdentity(const std::string& source, const std::string& identity);

  // Sets a row of sidelog_meta (the projection's hash: "projection").
  Status SaveMeta(const std::string& key, const std::string& value);

  // Applies `batch` on top of `before` (the source's checkpoint) as described above.
  ApplyResult Apply(const Batch& batch, const Checkpoint& before);

 private:
  struct CompiledStatement {
    std::unique_ptr<Statement> statement;
    std::vector<EventParameter> parameters;
    int number = 1;  // 1-based, within the handler's SQL
  };
  struct CompiledHandler {
    const HandlerConfig* config;
    std::vector<CompiledStatement> statements;
  };
  struct DeadLetter {
    const StoredEvent* event;
    std::string error;
  };

  Projection(const ConsolidatorConfig& config, Connect connect);
  // Connects (again) and prepares everything; `at_start` maps errors to file:line.
  Status Prepare(bool at_start);
  void Disconnect();
  Status RunHandlers(const StoredEvent& event, bool* handled);
  // One transaction: events[from, to), an optional dead letter, then the checkpoint.
  // On a handler error, *failed is the index of the failing event.
  Status Commit(const Batch& batch, size_t from, size_t to, const DeadLetter* dead,
                const Checkpoint& checkpoint, size_t* failed, int64_t* handled);
  bool Wanted(const StoredEvent& event) const;

  const ConsolidatorConfig& config_;
  Connect connect_;
  std::mutex mu_;
  std::unique_ptr<Db> db_;  // null after a lost connection, until the next Apply reconnects
  std::map<std::pair<std::string, std::string>, std::vector<CompiledHandler>> handlers_;
  // The consolidator's own statements, with their parameter names in binding order.
  struct InternalStatement {
    std::unique_ptr<Statement> statement;
    std::vector<std::string> names;
  };
  InternalStatement load_checkpoint_, save_checkpoint_, save_dead_letter_, load_identity_,
      save_identity_, save_meta_;
};

}  // namespace sidelog::consolidator
