#include "cuda/cuda_status.h"

#include "absl/strings/str_cat.h"

namespace mk::engine::cuda {

absl::Status CudaStatus(cudaError_t error, absl::string_view what, absl::string_view remedy) {
  if (error == cudaSuccess) return absl::OkStatus();
  absl::StatusCode code = absl::StatusCode::kInternal;
  absl::string_view hint = remedy;
  switch (error) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
      code = absl::StatusCode::kUnavailable;
      if (hint.empty()) hint = "check the driver and the device (nvidia-smi), or run --engine=cpu";
      break;
    case cudaErrorMemoryAllocation:
    case cudaErrorHostMemoryAlreadyRegistered:
      code = absl::StatusCode::kResourceExhausted;
      if (hint.empty()) hint = "lower --ring_slots or free device and pinned host memory";
      break;
    default:
      if (hint.empty()) {
        hint = "the engine restarts the kernel; if it persists, check dmesg for Xid errors";
      }
      break;
  }
  return absl::Status(code, absl::StrCat("cuda: ", what, " failed (", cudaGetErrorName(error), ": ",
                                         cudaGetErrorString(error), "); ", hint));
}

}  // namespace mk::engine::cuda
