// absl::Status -> grpc::Status with gRPC's rich error model: every error carries a
// google.rpc.Status in its binary details with an ErrorInfo (reason = the code's name, domain
// "megakerneld") and, for RESOURCE_EXHAUSTED and UNAVAILABLE, a RetryInfo with the delay to
// wait before retrying.
#ifndef MK_SERVER_SRC_STATUS_MAPPING_H_
#define MK_SERVER_SRC_STATUS_MAPPING_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace mk::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

// The retry delay RetryInfo (and grpc-retry-pushback-ms) announces for `code`; zero: none.
absl::Duration RetryDelayFor(absl::StatusCode code);

}  // namespace mk::server

#endif  // MK_SERVER_SRC_STATUS_MAPPING_H_
