// Credentials: bearer tokens mapped to tenants (and the admin role) from a tenants file.
//
// File format, one entry per line, '#' starts a comment:
//   tenant <id> <token>     a tenant's token (id 0..max_tenants-1)
//   admin <token>           the admin credential (Admin service)
//   cert <id|admin> <name>  under mutual TLS: calls with that tenant's (or the admin's) token
//                           must present a client certificate whose subject common name or a
//                           subject alternative name is <name> (several lines: any of them).
//                           A stolen token alone is then of no use. Needs --tls_client_ca_file.
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
#include <vector>

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
  // The admin credential alone names no tenant: data RPCs (Publish, Poll, Stream, resources of
  // a tenant) need a tenant token. Development mode's caller is tenant 0 and admin.
  bool is_tenant = true;
};

class TenantDirectory {
 public:
  // Development mode: everyone is tenant 0 and admin.
  static std::unique_ptr<TenantDirectory> DevelopmentMode();
  // INVALID_ARGUMENT naming the file and line for malformed entries; NOT_FOUND for no file.
  static absl::StatusOr<std::unique_ptr<TenantDirectory>> Load(const std::string& path,
                                                               uint32_t max_tenants);
  // Load's parser over the file's contents; errors name the file as `name`.
  static absl::StatusOr<std::unique_ptr<TenantDirectory>> Parse(absl::string_view contents,
                                                                absl::string_view name,
                                                                uint32_t max_tenants);

  bool development_mode() const { return development_mode_; }
  size_t tenant_count() const { return entries_.size(); }
  // Whether any `cert` line binds a certificate name (the server then requires mutual TLS).
  bool binds_certificates() const { return !bound_names_.empty(); }

  // UNAUTHENTICATED without a valid `authorization: Bearer <token>` header.
  absl::StatusOr<Caller> Authenticate(const grpc::CallbackServerContext& context) const;
  // As Authenticate, plus PERMISSION_DENIED for the admin credential, which names no tenant.
  absl::StatusOr<Caller> AuthenticateTenant(const grpc::CallbackServerContext& context) const;
  // `caller` if it names a tenant; PERMISSION_DENIED otherwise.
  static absl::StatusOr<Caller> RequireTenant(absl::StatusOr<Caller> caller);
  // As Authenticate, plus PERMISSION_DENIED unless the caller holds the admin credential.
  absl::StatusOr<Caller> AuthenticateAdmin(const grpc::CallbackServerContext& context) const;
  // The caller named by an `authorization` header value (nullopt: the header is absent).
  absl::StatusOr<Caller> AuthenticateHeader(std::optional<absl::string_view> authorization) const;
  // OK when no `cert` line binds `caller`, or `peer_names` (the client certificate's common name
  // and subject alternative names; empty without a verified certificate) holds a bound name;
  // PERMISSION_DENIED naming the caller and what was presented otherwise.
  absl::Status CheckCertificate(const Caller& caller,
                                const std::vector<std::string>& peer_names) const;
  // `caller` if it holds the admin credential; PERMISSION_DENIED otherwise.
  static absl::StatusOr<Caller> RequireAdmin(absl::StatusOr<Caller> caller);

 private:
  TenantDirectory() = default;
  bool development_mode_ = false;
  struct Entry {
    std::string token;
    Caller caller;
  };
  // Every entry is compared with every presented token in constant time (no early exit on a
  // prefix, no hash of the token): the time an answer takes tells nothing about the tokens.
  std::vector<Entry> entries_;
  // Certificate names bound by `cert` lines, by caller key ("admin", or the tenant id).
  absl::flat_hash_map<std::string, std::vector<std::string>> bound_names_;
};

}  // namespace mk::server

#endif  // MK_SERVER_SRC_AUTH_H_
