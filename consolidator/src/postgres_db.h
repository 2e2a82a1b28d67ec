// PostgresDb: a Db over one libpq connection (the only door to libpq in the consolidator).
// Every connection works in one schema through search_path, so handler SQL never names a
// schema and a rebuild can run the same SQL in a fresh one. A read-only connection sets
// default_transaction_read_only and runs each query in BEGIN READ ONLY, so the database
// itself refuses writes.
//
// Parameters are sent as text with their types left for the server to infer from the SQL
// (write :data.amount::numeric where the context does not say). Statements are prepared once
// per connection (PQprepare) and run with PQexecPrepared.
#pragma once

#include <memory>
#include <string>

#include "db.h"

namespace sidelog::consolidator {

// Connects with `conninfo` (key=value or a postgresql:// URI) and sets search_path to
// `schema`, creating the schema first when `create_schema`. Unavailable with libpq's message
// when the server cannot be reached or refuses.
Result<std::unique_ptr<Db>> ConnectPostgres(const std::string& conninfo, const std::string& schema,
                                            Access access, bool create_schema);

// `name` as a quoted identifier: "order_summary" (doubling any quote inside).
std::string QuotePostgresIdentifier(const std::string& name);

}  // namespace sidelog::consolidator
