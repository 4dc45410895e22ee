// The one absl -> gRPC status conversion: every code maps to its gRPC twin, the message kept.
#include "status_mapping.h"

#include "gtest/gtest.h"

namespace mk::server {
namespace {

TEST(StatusMappingTest, EveryCanonicalCodeKeepsItsNumberAndMessage) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  for (int code = 1; code <= 16; ++code) {
    const absl::Status s(static_cast<absl::StatusCode>(code), "engine: what happened; what to do");
    const grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), code);
    EXPECT_EQ(g.error_message(), "engine: what happened; what to do");
  }
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("full")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpcStatus(absl::FailedPreconditionError("disabled")).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
}  // namespace mk::server
