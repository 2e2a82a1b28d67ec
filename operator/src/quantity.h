// Kubernetes resource quantities ("10Gi", "500M", "1e9", 1024), as metav1 spells sizes.
#pragma once

#include <cstdint>
#include <string>

#include "kube_client.h"
#include "sidelog/status.h"

namespace sidelog::op {

// The quantity as a whole number, rounded up (as resource.Quantity.Value() does). `value` is a
// JSON string or integer. Invalid (naming the text) when it is not a quantity or does not fit
// in 63 bits.
Result<int64_t> ParseQuantity(const Json& value);

}  // namespace sidelog::op
