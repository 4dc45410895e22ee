#include "status_mapping.h"

#include <string>

#include "absl/strings/ascii.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace mk::server {

namespace {

constexpr char kDomain[] = "megakerneld";

}  // namespace

absl::Duration RetryDelayFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kResourceExhausted:
      return absl::Milliseconds(1);  // a ring partition or a quota drains in microseconds
    case absl::StatusCode::kUnavailable:
      return absl::Seconds(1);  // draining or restarting: try another replica or later
    default:
      return absl::ZeroDuration();
  }
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share the canonical numbering (0..16).
  const auto code = static_cast<grpc::StatusCode>(status.code());
  const std::string message(status.message());
  google::rpc::Status details;
  details.set_code(static_cast<int32_t>(status.code()));
  details.set_message(message);
  google::rpc::ErrorInfo info;
  info.set_reason(absl::AsciiStrToUpper(absl::StatusCodeToString(status.code())));
  info.set_domain(kDomain);
  details.add_details()->PackFrom(info);
  if (const absl::Duration delay = RetryDelayFor(status.code()); delay > absl::ZeroDuration()) {
    google::rpc::RetryInfo retry;
    retry.mutable_retry_delay()->set_seconds(absl::ToInt64Seconds(delay));
    retry.mutable_retry_delay()->set_nanos(
        static_cast<int32_t>(absl::ToInt64Nanoseconds(delay % absl::Seconds(1))));
    details.add_details()->PackFrom(retry);
  }
  return grpc::Status(code, message, details.SerializeAsString());
}

}  // namespace mk::server
