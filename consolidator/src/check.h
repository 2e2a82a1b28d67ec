// A config checked against a scratch SQLite database, without reading any event: the schema
// applies, every handler statement prepares, and every query prepares on a read-only
// connection. The operator runs it before it rolls out a Consolidator's SQLite read model, so a
// handler the database rejects becomes a condition instead of a crash loop.
#pragma once

#include <string>

#include "config.h"

namespace sidelog::consolidator {

// Invalid with the config's message (the field, the statement and the database's error) when
// something does not prepare; Unavailable when the scratch file cannot be made in `dir`.
Status CheckAgainstSqlite(const ConsolidatorConfig& config, const std::string& dir);

}  // namespace sidelog::consolidator
