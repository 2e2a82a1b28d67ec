// Queries: the config's named queries, run on read-only connections to the live slot.
//
// Request parameters fill the query's :name placeholders as bound values (an injection attempt
// is just a string). Read-only is enforced by the database: PRAGMA query_only on SQLite reader
// connections, READ ONLY transactions on PostgreSQL. Ad-hoc SQL is not offered.
//
// Thread-safe: up to `max_connections` queries run at once, each on its own connection; more
// wait. Pause() closes every connection and holds queries off, for a rebuild's swap.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "config.h"
#include "db.h"
#include "target.h"

namespace sidelog::consolidator {

class Queries {
 public:
  Queries(const ConsolidatorConfig& config, Target* target, size_t max_connections = 4);
  ~Queries();

  // Prepares every query on a reader connection. Invalid with the config's file:line when one
  // does not prepare (or writes, on SQLite); Unavailable when the target cannot be reached.
  Status Check();

  // Runs query `name` with `params` (name -> value as sent). Returns {"rows": [...]}.
  // NotFound for an unknown query; Invalid for a missing or unknown parameter; TooLarge past
  // `max_rows`; Unavailable when the database cannot be reached.
  Result<Json> Run(const std::string& name, const std::map<std::string, std::string>& params,
                   size_t max_rows = 10000);

  // The queries and the parameters each takes: [{"name": "order", "parameters": ["id"]}].
  Json List() const;

  // While the returned lock is held, no query runs and no connection is open.
  std::unique_lock<std::shared_mutex> Pause();

  // Lenient: a query that does not prepare on the live slot answers Unavailable, the others
  // run (the live view was built by the previous schema and handlers, until a rebuild swaps
  // the new one in). Strict (the default): such a reader fails, as Check does.
  void SetLenient(bool lenient);

 private:
  struct Query {
    const QueryConfig* config;
    std::string text;                     // rewritten
    std::vector<std::string> parameters;  // in binding order
    int line;                             // of the statement within the SQL
  };
  // A reader connection and the queries prepared on it.
  struct Reader {
    std::unique_ptr<Db> db;
    std::map<std::string, std::unique_ptr<Statement>> statements;
    std::map<std::string, std::string> unprepared;  // lenient: query -> why it did not prepare
    ~Reader() { statements.clear(); }               // statements before their connection
  };
  Result<std::unique_ptr<Reader>> OpenReader();
  std::unique_ptr<Reader> Acquire(Status* error);
  void Release(std::unique_ptr<Reader> reader);

  const ConsolidatorConfig& config_;
  Target* target_;
  const size_t max_connections_;
  std::map<std::string, Query> queries_;

  std::shared_mutex swap_;  // shared by queries, exclusive by Pause
  std::mutex mu_;
  std::condition_variable released_;
  std::vector<std::unique_ptr<Reader>> idle_;
  size_t open_ = 0;
  std::atomic<bool> lenient_{false};
};

}  // namespace sidelog::consolidator
