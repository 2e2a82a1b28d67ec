// metav1.Condition helpers for status.conditions arrays (JSON).
#pragma once

#include <string>

#include "kube_client.h"

namespace sidelog::op {

struct Condition {
  std::string type;
  std::string status;  // "True", "False" or "Unknown"
  std::string reason;
  std::string message;
  int64_t observed_generation = 0;
};

// Sets `c` in `conditions` (an array, created when null). lastTransitionTime changes only when
// the status does, as Kubernetes expects. Returns true if anything changed.
bool SetCondition(Json* conditions, const Condition& c);

// The condition of that type, or null.
const Json* FindCondition(const Json& conditions, const std::string& type);

}  // namespace sidelog::op
