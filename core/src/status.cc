#include "sidelog/status.h"

namespace sidelog {

const char* CodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk:
      return "OK";
    case Status::Code::kInvalid:
      return "Invalid";
    case Status::Code::kNotFound:
      return "NotFound";
    case Status::Code::kForbidden:
      return "Forbidden";
    case Status::Code::kConflict:
      return "Conflict";
    case Status::Code::kGone:
      return "Gone";
    case Status::Code::kRejected:
      return "Rejected";
    case Status::Code::kTooLarge:
      return "TooLarge";
    case Status::Code::kUnavailable:
      return "Unavailable";
    case Status::Code::kStorageFull:
      return "StorageFull";
    case Status::Code::kInternal:
      return "Internal";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out = CodeName(code_);
  if (!context_.stream.empty()) out += ": stream " + context_.stream;
  if (!context_.entity.empty()) out += ", entity " + context_.entity;
  return out + ": " + message_;
}

}  // namespace sidelog
