// Base64 (RFC 4648, standard alphabet, padded), as Kubernetes uses it for Secret data,
// caBundles and kubeconfig *-data fields.
#pragma once

#include <string>

#include "sidelog/status.h"

namespace sidelog {

std::string Base64Encode(const std::string& bytes);
// Line breaks and spaces are ignored. Invalid, naming `what`, when `text` is not
// base64.
Result<std::string> Base64Decode(const std::string& text, const std::string& what = "value");

}  // namespace sidelog
