// The consolidator's YAML config: the fields of the Consolidator CR's spec (DESIGN.md "Custom
// resources", crds/consolidators.yaml) plus what a process needs to run on its own:
//
//   name: order-summary              # DNS-1035 label; names logs, metrics, the default schema
//   # where events are read: a sidecar's stream API, or JetStream
//   sidecar: {url: http://127.0.0.1:4380}
//   # or: namespace: shop               (the streams' namespace: SIDELOG_<namespace>_<stream>)
//   #     nats: {url: nats://..., credsFile: ..., tls: {...}}   (as the sidecar's nats section)
//   #     delivery: push                 (an ordered push consumer; or pull: fetched batches)
//   listen: 127.0.0.1:4390           # the query/status API (loopback by default)
//   sources: [{stream: orders, types: [OrderCreated]}]
//   target:
//     sqlite: {path: order-summary.db}
//     # or postgres: {connection: "host=...", connectionEnv: VAR, schema: order_summary}
//   schema: |                        # idempotent DDL, run at every start
//     CREATE TABLE IF NOT EXISTS ...
//   handlers: [{event: orders/OrderCreated, sql: "INSERT ..."}]   # `on`: a deprecated alias
//   queries: {order: "SELECT ... WHERE id = :id"}
//   batch: {maxEvents: 500, maxDelay: 1s}
//   onError: stop                    # or skip (dead-letter the event and go on)
//   logLevel: info
//
// With JetStream, each source is read by an ephemeral consumer starting right after the
// database checkpoint, the source of truth: no durable consumer is left behind.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sidelog/config.h"
#include "sidelog/status.h"
#include "sidelog/yaml.h"

namespace sidelog::consolidator {

struct SourceConfig {
  std::string stream;
  std::vector<std::string> types;  // the types folded; from the handlers when not configured
  bool types_configured = false;
};

struct HandlerConfig {
  std::string stream;
  std::string type;
  std::string sql;      // one or more statements separated by ';'
  std::string pointer;  // JSON pointer of the handler in the config, for errors
};

struct QueryConfig {
  std::string name;
  std::string sql;  // exactly one statement
  std::string pointer;
};

struct SqliteTarget {
  std::string path;
};

struct PostgresTarget {
  std::string connection;      // resolved: from `connection` or from the env var
  std::string connection_env;  // the env var's name, when the connection came from one
  std::string schema;
};

enum class OnError { kStop, kSkip };

enum class Delivery { kSidecar, kPush, kPull };

struct ConsolidatorConfig {
  std::string name;
  std::string sidecar_url;         // Delivery::kSidecar
  std::optional<NatsConfig> nats;  // kPush, kPull
  std::string ns;                  // the streams' namespace, with nats
  Delivery delivery = Delivery::kSidecar;
  std::string listen = "127.0.0.1:4390";
  std::string log_level = "info";
  std::vector<SourceConfig> sources;
  std::optional<SqliteTarget> sqlite;
  std::optional<PostgresTarget> postgres;
  std::string schema;
  std::vector<HandlerConfig> handlers;
  std::vector<QueryConfig> queries;
  int max_batch_events = 500;
  std::chrono::milliseconds max_batch_delay{1000};
  OnError on_error = OnError::kStop;
  // With PostgreSQL, more than one: the others are standbys waiting for the advisory lock.
  int replicas = 1;
  // What loads but should change (a handler's deprecated `on`, a handler whose type its source
  // does not read): the program logs them (LogConfigWarnings) once logging is set up.
  std::vector<ConfigWarning> warnings;

  // The parsed file, so errors found later (SQL that does not prepare) still say file:line.
  YamlDocument doc;
  std::vector<std::string> source_lines;  // the file's text, to place SQL statements
  // "file:line: field: message" for the node at `pointer`.
  Status Error(const std::string& pointer, const std::string& message) const {
    return doc.Error(pointer, message);
  }
  // The same for line `sql_line` (1-based) of the SQL text at `pointer`, so an error in the
  // third statement of a block scalar names the file line it is on.
  Status SqlError(const std::string& pointer, int sql_line, const std::string& message) const;
};

// Reads and validates a config file: unknown fields, names, handler `event` naming a listed
// source, parameter names, SQL that does not tokenize. Invalid with "file:line: field: message".
// A handler's `on` is accepted as a deprecated alias of `event`, with a warning.
// Whether the SQL prepares is checked later, against the target (Projection::Open).
Result<ConsolidatorConfig> LoadConsolidatorConfig(const std::string& path);
// The same from text; `origin` names it in messages.
Result<ConsolidatorConfig> ParseConsolidatorConfig(const std::string& yaml,
                                                   const std::string& origin);

}  // namespace sidelog::consolidator
