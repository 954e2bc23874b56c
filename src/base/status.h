// Status and StatusOr: the error values every Stella library returns.
//
// Expected failures (bad input, I/O, a peer that went away) travel as Status
// values with a message that carries context; broken invariants abort through
// STELLA_CHECK. Status is cheap to copy when ok.
//
// Thread safety: immutable values; safe to share once constructed.
#ifndef STELLA_SRC_BASE_STATUS_H_
#define STELLA_SRC_BASE_STATUS_H_

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace stella {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller's input is wrong; retrying will not help
  kNotFound,         // a named file, key or resource does not exist
  kFailedPrecondition,
  kOutOfRange,
  kDataLoss,          // corrupt or truncated data
  kIoError,           // the OS refused a read/write/socket call
  kUnavailable,       // a peer is unreachable; retrying may help
  kDeadlineExceeded,  // a blocking call ran past its timeout
  kCancelled,         // stopped on request (signal, shutdown)
  kAborted,           // lost a race (e.g. a write conflict); retry after re-reading
  kInternal,
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "InvalidArgument: spec.clusters[0].workers: must be >= 1, got 0"
  std::string ToString() const;

  // Returns a copy whose message is "context: message"; ok stays ok.
  Status WithContext(const std::string& context) const;

  // Marks a status as deliberately ignored.
  void IgnoreError() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgumentError(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFoundError(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status FailedPreconditionError(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status OutOfRangeError(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
inline Status DataLossError(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status UnavailableError(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status DeadlineExceededError(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
inline Status CancelledError(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status AbortedError(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
inline Status InternalError(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// An errno-based IoError: "what: strerror(errno)".
Status ErrnoError(const std::string& what, int err);

// Either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const Status& status) : status_(status) {  // NOLINT: implicit by design
    if (status_.ok()) status_ = InternalError("StatusOr constructed from an ok Status without a value");
  }
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

  T& value() & {
    CheckOk();
    return *value_;
  }
  const T& value() const& {
    CheckOk();
    return *value_;
  }
  T&& value() && {
    CheckOk();
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  void CheckOk() const {
    if (!status_.ok()) {
      std::fprintf(stderr, "StatusOr::value() on error: %s\n", status_.ToString().c_str());
      std::abort();
    }
  }
  Status status_;
  std::optional<T> value_;
};

}  // namespace stella

#define STELLA_CONCAT_INNER_(a, b) a##b
#define STELLA_CONCAT_(a, b) STELLA_CONCAT_INNER_(a, b)

#define STELLA_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::stella::Status stella_status_ = (expr);        \
    if (!stella_status_.ok()) return stella_status_; \
  } while (0)

#define STELLA_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

#define STELLA_ASSIGN_OR_RETURN(lhs, expr) \
  STELLA_ASSIGN_OR_RETURN_IMPL_(STELLA_CONCAT_(stella_statusor_, __LINE__), lhs, expr)

// Aborts with file:line when an invariant is broken (never for bad input).
#define STELLA_CHECK(cond)                                                          \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

#endif  // STELLA_SRC_BASE_STATUS_H_
