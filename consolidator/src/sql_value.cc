#include "sql_value.h"

#include <cstdint>
#include <limits>

namespace sidelog::consolidator {

SqlValue SqlValueFromJson(const Json& v) {
  switch (v.type()) {
    case Json::value_t::string:
      return v.get<std::string>();
    case Json::value_t::boolean:
      return static_cast<int64_t>(v.get<bool>() ? 1 : 0);
    case Json::value_t::number_integer:
      return v.get<int64_t>();
    case Json::value_t::number_unsigned: {
      uint64_t u = v.get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return static_cast<int64_t>(u);
      }
      return static_cast<double>(u);
    }
    case Json::value_t::number_float:
      return v.get<double>();
    case Json::value_t::object:
    case Json::value_t::array:
      return v.dump();
    default:
      return std::monostate{};
  }
}

std::string SqlValueText(const SqlValue& value) {
  if (std::holds_alternative<int64_t>(value)) return std::to_string(std::get<int64_t>(value));
  // JSON's shortest round-trip form: 0.1 stays "0.1", and every double survives the trip.
  if (std::holds_alternative<double>(value)) return Json(std::get<double>(value)).dump();
  if (std::holds_alternative<std::string>(value)) return std::get<std::string>(value);
  return "NULL";
}

}  // namespace sidelog::consolidator
