// A value bound to a SQL parameter, and how event JSON becomes one (DESIGN.md "Consolidator"):
// string -> text, integer -> integer, other number -> real, boolean -> integer 0/1,
// object or array -> JSON text, null or missing -> NULL.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include "sidelog/event.h"

namespace sidelog::consolidator {

// NULL, INTEGER, REAL or TEXT.
using SqlValue = std::variant<std::monostate, int64_t, double, std::string>;

SqlValue SqlValueFromJson(const Json& value);

// The value as text, as PostgreSQL's text protocol and error messages want it; NULL is "NULL".
std::string SqlValueText(const SqlValue& value);

}  // namespace sidelog::consolidator
