// Db: one connection to the read model's database, SQLite or PostgreSQL, behind one small
// interface so the projection and the queries never touch a C handle. Errors are values:
//
//   Rejected     the database refused a statement for this data or this SQL (constraint,
//                type, syntax, unknown table): a handler error, not worth retrying as is
//   Unavailable  the connection broke, the database is busy or out of resources: retry later
//   Invalid      a statement does not prepare (reported at start, with the SQL error)
//
// A Db and its Statements are used by one thread at a time; Statements must not outlive the Db
// that prepared them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "sidelog/event.h"
#include "sql_template.h"
#include "sql_value.h"

namespace sidelog::consolidator {

// Whether a connection may write. Read-only is enforced by the database itself.
enum class Access { kReadWrite, kReadOnly };

class Statement {
 public:
  virtual ~Statement() = default;

  // Runs the statement with params[i] bound to ?i+1 / $i+1, discarding rows.
  virtual Status Execute(const std::vector<SqlValue>& params) = 0;

  // Runs it and returns the rows as JSON objects {column: value}, typed: integers, reals,
  // booleans (PostgreSQL), JSON (PostgreSQL json/jsonb), text; NULL as null. TooLarge when
  // there are more than `max_rows`.
  virtual Result<Json> Query(const std::vector<SqlValue>& params, size_t max_rows) = 0;
};

class Db {
 public:
  virtual ~Db() = default;

  virtual Dialect dialect() const = 0;

  // Runs a script of statements without parameters (the schema's DDL).
  virtual Status ExecScript(const std::string& sql) = 0;

  // Prepares one statement taking `param_count` parameters. Invalid, with the database's
  // message, when it does not prepare.
  virtual Result<std::unique_ptr<Statement>> Prepare(const std::string& sql,
                                                     size_t param_count) = 0;

  // Transactions. Begin is read-only on a read-only connection.
  virtual Status Begin() = 0;
  virtual Status Commit() = 0;
  virtual void Rollback() = 0;

  // True when the connection is lost for good: open a new Db (and prepare again).
  virtual bool broken() const = 0;
};

}  // namespace sidelog::consolidator
