#include "early_auth.h"

#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mk::server {

bool IsOpenMethod(absl::string_view path) {
  return absl::StartsWith(path, "/grpc.health.v1.Health/") ||
         absl::StartsWith(path, "/grpc.reflection.");
}

grpc::Status EarlyAuthProcessor::Process(const InputMetadata& auth_metadata,
                                         grpc::AuthContext* /*context*/,
                                         OutputMetadata* /*consumed_auth_metadata*/,
                                         OutputMetadata* /*response_metadata*/) {
  if (tenants_->development_mode()) return grpc::Status::OK;
  auto path = auth_metadata.find(":path");
  if (path != auth_metadata.end() &&
      IsOpenMethod(absl::string_view(path->second.data(), path->second.size()))) {
    return grpc::Status::OK;
  }
  auto header = auth_metadata.find("authorization");
  std::optional<absl::string_view> authorization;
  if (header != auth_metadata.end()) {
    authorization = absl::string_view(header->second.data(), header->second.size());
  }
  absl::StatusOr<Caller> caller = tenants_->AuthenticateHeader(authorization);
  if (caller.ok()) return grpc::Status::OK;
  return grpc::Status(
      grpc::StatusCode::UNAUTHENTICATED,
      absl::StrCat(caller.status().message(), " (checked before the request body was read)"));
}

}  // namespace mk::server
