// Go-style durations ("50ms", "1m30s", "1.5h"), as Kubernetes' metav1.Duration spells them.
#pragma once

#include <chrono>
#include <string>

#include "sidelog/status.h"

namespace sidelog {

// Parses a non-negative duration: one or more <number><unit> with units ns, us, µs, ms, s, m, h,
// or a bare "0". Invalid (naming the text) otherwise.
Result<std::chrono::nanoseconds> ParseDuration(const std::string& text);

}  // namespace sidelog
