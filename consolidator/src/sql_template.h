// SQL with named parameters (`:entity`, `:data.items.0.sku`, `:customer`), split into statements
// and rewritten to the target's positional form: `?1 ?2` for SQLite, `$1 $2` for PostgreSQL.
// Values are always bound, never interpolated into the text.
//
// The tokenizer knows just enough SQL to find parameters and statement ends safely: string
// literals ('it''s', PostgreSQL E'it\'s'), quoted identifiers ("a", and for SQLite `a` and [a]),
// -- and /* */ comments (nested in PostgreSQL), PostgreSQL `::` casts, `:=` and dollar-quoted
// strings ($$...$$, $tag$...$tag$). A `:` inside any of these is text, not a parameter.
//
// Positional or native parameters written by hand (`?`, `?1`, `@x`, `$x` in SQLite; `$1` in
// PostgreSQL) are refused: they would bind NULL silently.
#pragma once

#include <string>
#include <vector>

#include "sidelog/status.h"

namespace sidelog::consolidator {

enum class Dialect { kSqlite, kPostgres };

const char* DialectName(Dialect dialect);

// One statement, rewritten.
struct SqlStatement {
  std::string text;                     // with ?N / $N in place of each :name
  std::vector<std::string> parameters;  // distinct names; parameters[i] is ?i+1 / $i+1
  std::string original;                 // the statement as written, trimmed
  int line = 1;                         // 1-based line of its first token within the source
};

// Splits `sql` at top-level semicolons (empty statements are dropped) and rewrites parameters.
// A parameter is ':' followed by a letter or '_', then letters, digits, '_' and dots joining
// further segments ("data.items.0"). Invalid on an unterminated literal, quoted identifier or
// comment, or on a hand-written positional parameter; then *error_line (when given) is the
// 1-based line within `sql` where the problem starts.
Result<std::vector<SqlStatement>> ParseSql(const std::string& sql, Dialect dialect,
                                           int* error_line = nullptr);

}  // namespace sidelog::consolidator
