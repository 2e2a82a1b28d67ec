// The named parameters a handler may use, and their values for one event:
//
//   :entity :type :id :stream   text
//   :version :position          integer
//   :time                       text, RFC 3339 UTC with microseconds
//   ("2026-11-26T10:00:00.123456Z") :data                       the whole data as JSON text
//   (objects, arrays) or its scalar value :data.<path>                a value inside data:
//   dot-separated object keys, and digits index
//                               arrays ("data.items.0.sku"); a missing path binds NULL
//   :meta.<key>                 a metadata value (text), NULL when absent
//
// JSON values bind as SqlValueFromJson says (sql_value.h).
#pragma once

#include <string>
#include <vector>

#include "sidelog/event.h"
#include "sql_value.h"

namespace sidelog::consolidator {

class EventParameter {
 public:
  // Invalid when `name` (without the colon) is not one of the forms above; the message lists them.
  static Result<EventParameter> Parse(const std::string& name);

  SqlValue ValueFor(const StoredEvent& event) const;

 private:
  enum class Kind { kEntity, kType, kId, kStream, kVersion, kPosition, kTime, kData, kMeta };
  Kind kind_ = Kind::kEntity;
  std::vector<std::string> path_;  // kData: the keys; kMeta: the one key
};

}  // namespace sidelog::consolidator
