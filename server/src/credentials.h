// How the gRPC server listens: TLS credentials from the PEM files (checked before the server
// starts, so a bad certificate or key is named as such), the loopback rule of development mode,
// and the connection options (message size, keepalive enforcement, idle and age limits, streams
// per connection) applied to the builder.
//
// Thread safety: plain functions, called once at startup.
#ifndef MK_SERVER_SRC_CREDENTIALS_H_
#define MK_SERVER_SRC_CREDENTIALS_H_

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "auth.h"
#include "mk/server/server.h"

namespace mk::server {

// Insecure credentials without TLS files; TLS (optionally mutual) with them, which authenticate
// each call's token from `tenants` before its body is read (early_auth.h; `tenants` must
// outlive the server). INVALID_ARGUMENT naming the file for an unreadable, malformed or
// mismatched certificate or key.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeCredentials(
    const ServerOptions& o, const TenantDirectory* tenants);

// Whether the host of "host:port" is a loopback address (127.0.0.0/8, ::1, localhost).
bool IsLoopbackListen(const std::string& listen);

// FAILED_PRECONDITION when development mode would listen off loopback without permission.
absl::Status CheckDevelopmentModeExposure(const ServerOptions& o, bool development_mode);

void ApplyConnectionOptions(const ServerOptions& o, grpc::ServerBuilder* builder);

}  // namespace mk::server

#endif  // MK_SERVER_SRC_CREDENTIALS_H_
