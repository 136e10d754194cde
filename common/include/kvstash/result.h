// Result<T>: either a value or a non-OK Status. The value accessors require ok().
#pragma once

#include <cassert>
#include <optional>
#include <utility>

#include "kvstash/status.h"

namespace kvstash {

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.ok() && "Result constructed from an OK status carries no value");
    if (status_.ok()) status_ = Status(StatusCode::kInternal, "Result built from OK status");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }

  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace kvstash

// Evaluates a Result-returning expression; on error returns its Status, else binds the value.
#define KVSTASH_CONCAT_INNER(a, b) a##b
#define KVSTASH_CONCAT(a, b) KVSTASH_CONCAT_INNER(a, b)
#define KVSTASH_ASSIGN_OR_RETURN(lhs, expr)                                 \
  auto KVSTASH_CONCAT(_kvstash_res_, __LINE__) = (expr);                    \
  if (!KVSTASH_CONCAT(_kvstash_res_, __LINE__).ok())                        \
    return KVSTASH_CONCAT(_kvstash_res_, __LINE__).status();                \
  lhs = std::move(KVSTASH_CONCAT(_kvstash_res_, __LINE__)).value()
