// The one conversion from absl::Status to grpc::Status (and back, for clients of the server's
// own code paths). Codes map one to one; the message is kept.
#ifndef MK_SERVER_SRC_STATUS_MAPPING_H_
#define MK_SERVER_SRC_STATUS_MAPPING_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace mk::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace mk::server

#endif  // MK_SERVER_SRC_STATUS_MAPPING_H_
