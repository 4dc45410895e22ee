#include "status_mapping.h"

#include <string>

namespace mk::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share the canonical numbering (0..16).
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string{status.message()});
}

}  // namespace mk::server
