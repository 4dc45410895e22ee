// Credentials: bearer tokens mapped to tenants (and the admin role) from a tenants file.
//
// File format, one entry per line, '#' starts a comment:
//   tenant <id> <token>     a tenant's token (id 0..max_tenants-1)
//   admin <token>           the admin credential (Admin service)
// Without a file the server runs in single-tenant development mode: every caller is tenant 0
// and may use the Admin service. The server says so at startup.
//
// Thread safety: immutable after Load; Authenticate is safe from any thread.
#ifndef MK_SERVER_SRC_AUTH_H_
#define MK_SERVER_SRC_AUTH_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace grpc {
class CallbackServerContext;
}

namespace mk::server {

struct Caller {
  uint32_t tenant = 0;
  bool admin = false;
};

class TenantDirectory {
 public:
  // Development mode: everyone is tenant 0 and admin.
  static std::unique_ptr<TenantDirectory> DevelopmentMode();
  // INVALID_ARGUMENT naming the file and line for malformed entries; NOT_FOUND for no file.
  static absl::StatusOr<std::unique_ptr<TenantDirectory>> Load(const std::string& path,
                                                               uint32_t max_tenants);

  bool development_mode() const { return development_mode_; }
  size_t tenant_count() const { return tenants_.size(); }

  // UNAUTHENTICATED without a valid `authorization: Bearer <token>` header.
  absl::StatusOr<Caller> Authenticate(const grpc::CallbackServerContext& context) const;
  // As Authenticate, plus PERMISSION_DENIED unless the caller holds the admin credential.
  absl::StatusOr<Caller> AuthenticateAdmin(const grpc::CallbackServerContext& context) const;
  // The caller named by an `authorization` header value (nullopt: the header is absent).
  absl::StatusOr<Caller> AuthenticateHeader(std::optional<absl::string_view> authorization) const;
  // `caller` if it holds the admin credential; PERMISSION_DENIED otherwise.
  static absl::StatusOr<Caller> RequireAdmin(absl::StatusOr<Caller> caller);

 private:
  TenantDirectory() = default;
  bool development_mode_ = false;
  absl::flat_hash_map<std::string, Caller> tenants_;  // token -> caller
};

}  // namespace mk::server

#endif  // MK_SERVER_SRC_AUTH_H_
