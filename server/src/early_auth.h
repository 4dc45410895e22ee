// Authentication before a request's body is read, on TLS listeners: gRPC reads a unary call's
// whole message before its handler runs, so a handler's token check comes after an anonymous
// caller made the server hold up to --max_message_bytes per call. An AuthMetadataProcessor runs
// on the call's initial metadata instead, and a call without a valid token ends there.
//
// gRPC runs metadata processors only on secure listeners (InsecureServerCredentials has none),
// so plaintext listeners keep the handlers' checks alone (docs/security.md says what that
// bounds). The handlers authenticate every call again from the same metadata either way: the
// processor only refuses early, it grants nothing.
//
// Thread safety: Process runs on gRPC's threads, concurrently; it reads the immutable
// TenantDirectory only. Lifetime: `tenants` must outlive the gRPC server using the processor.
#ifndef MK_SERVER_SRC_EARLY_AUTH_H_
#define MK_SERVER_SRC_EARLY_AUTH_H_

#include <grpcpp/security/auth_metadata_processor.h>

#include "absl/strings/string_view.h"
#include "auth.h"

namespace mk::server {

// Whether a method (the ":path" value) needs no token: gRPC health and reflection.
bool IsOpenMethod(absl::string_view path);

class EarlyAuthProcessor final : public grpc::AuthMetadataProcessor {
 public:
  explicit EarlyAuthProcessor(const TenantDirectory* tenants) : tenants_(tenants) {}
  // A token lookup in memory: run inline on the transport's thread, not on a thread of its own.
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  const TenantDirectory* tenants_;
};

}  // namespace mk::server

#endif  // MK_SERVER_SRC_EARLY_AUTH_H_
