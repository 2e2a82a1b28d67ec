// Errors as values. Every fallible operation in libsidelog returns a Status or a Result<T>;
// exceptions never cross a layer boundary. The HTTP layer maps Status::Code to problem+json in
// one place, so each code has exactly one meaning:
//
//   Invalid      the request itself is malformed (400)
//   NotFound     no such stream or entity (404)
//   Forbidden    this service may not do that (403)
//   Conflict     expected version or idempotency mismatch (409)
//   Gone         the entity was deleted, or history was trimmed (410)
//   Rejected     a state machine, reducer or schema rule refused the events (422)
//   TooLarge     a size limit was exceeded (413)
//   Unavailable  try again later; outcome_unknown says whether it may have been stored (503)
//   Internal     a bug or an I/O failure of the local log (500)
//
// A Status carries the context needed to act on it: which stream and entity, the expected and
// current versions, and the rule that was broken.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace sidelog {

struct ErrorContext {
  std::string stream;
  std::string entity;
  std::string expected_version;            // as the caller gave it: "any", "none", "7"
  std::optional<int64_t> current_version;  // the entity's version when the error was decided
  std::string rule;                        // the rule that was broken, e.g. "entityId.length"
  bool outcome_unknown = false;            // Unavailable: the commit may have been stored
  std::optional<int> retry_after_seconds;  // Unavailable: when to retry
  std::string reason;                      // a machine-readable reason, e.g. "StreamReset"
};

class Status {
 public:
  enum class Code {
    kOk,
    kInvalid,
    kNotFound,
    kForbidden,
    kConflict,
    kGone,
    kRejected,
    kTooLarge,
    kUnavailable,
    kStorageFull,  // the disk under the log is full: nothing was stored; retry once freed
    kInternal,
  };

  Status() = default;
  Status(Code code, std::string message, ErrorContext context = {})
      : code_(code), message_(std::move(message)), context_(std::move(context)) {}

  static Status Ok() { return {}; }
  static Status Invalid(std::string msg, ErrorContext ctx = {}) {
    return {Code::kInvalid, std::move(msg), std::move(ctx)};
  }
  static Status NotFound(std::string msg, ErrorContext ctx = {}) {
    return {Code::kNotFound, std::move(msg), std::move(ctx)};
  }
  static Status Forbidden(std::string msg, ErrorContext ctx = {}) {
    return {Code::kForbidden, std::move(msg), std::move(ctx)};
  }
  static Status Conflict(std::string msg, ErrorContext ctx = {}) {
    return {Code::kConflict, std::move(msg), std::move(ctx)};
  }
  static Status Gone(std::string msg, ErrorContext ctx = {}) {
    return {Code::kGone, std::move(msg), std::move(ctx)};
  }
  static Status Rejected(std::string msg, ErrorContext ctx = {}) {
    return {Code::kRejected, std::move(msg), std::move(ctx)};
  }
  static Status TooLarge(std::string msg, ErrorContext ctx = {}) {
    return {Code::kTooLarge, std::move(msg), std::move(ctx)};
  }
  static Status Unavailable(std::string msg, ErrorContext ctx = {}) {
    return {Code::kUnavailable, std::move(msg), std::move(ctx)};
  }
  static Status StorageFull(std::string msg, ErrorContext ctx = {}) {
    return {Code::kStorageFull, std::move(msg), std::move(ctx)};
  }
  static Status Internal(std::string msg, ErrorContext ctx = {}) {
    return {Code::kInternal, std::move(msg), std::move(ctx)};
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  const ErrorContext& context() const { return context_; }
  ErrorContext& context() { return context_; }

  // "Conflict: stream orders, entity order-1: expected version 3, current version 4".
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
  ErrorContext context_;
};

// The name of a code as it appears in logs and problem titles ("Conflict").
const char* CodeName(Status::Code code);

// Either a value or a non-ok Status.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace sidelog
