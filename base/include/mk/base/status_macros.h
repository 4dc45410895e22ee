// The project's status-propagation macros (Abseil LTS 20220623 has none of its own).
// Header-only, depends on Abseil alone, so every module may use it.
#ifndef MK_BASE_STATUS_MACROS_H_
#define MK_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MK_STATUS_CONCAT_INNER_(a, b) a##b
#define MK_STATUS_CONCAT_(a, b) MK_STATUS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define MK_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status mk_status_ = (expr);      \
    if (!mk_status_.ok()) return mk_status_; \
  } while (0)

// `MK_ASSIGN_OR_RETURN(auto x, Fn());` assigns the value of a StatusOr or returns its status.
#define MK_ASSIGN_OR_RETURN(lhs, expr) \
  MK_ASSIGN_OR_RETURN_IMPL_(MK_STATUS_CONCAT_(mk_statusor_, __LINE__), lhs, expr)
// `lhs` is a declaration or an lvalue and `tmp` a name: neither can be parenthesized.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define MK_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return std::move(tmp).status();  \
  lhs = *std::move(tmp)
// NOLINTEND(bugprone-macro-parentheses)

#endif  // MK_BASE_STATUS_MACROS_H_
