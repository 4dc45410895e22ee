// The one place a cudaError_t becomes an absl::Status:
//   cuda: <what> failed (<error name>: <error text>); <what to do>
#ifndef MK_ENGINE_SRC_CUDA_CUDA_STATUS_H_
#define MK_ENGINE_SRC_CUDA_CUDA_STATUS_H_

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace mk::engine::cuda {

// OK for cudaSuccess. UNAVAILABLE when there is no usable device or driver, RESOURCE_EXHAUSTED
// for allocation failures, INTERNAL otherwise. `remedy` defaults to a generic hint.
absl::Status CudaStatus(cudaError_t error, absl::string_view what, absl::string_view remedy = "");

}  // namespace mk::engine::cuda

#define MK_CUDA_RETURN_IF_ERROR(expr, what)                                     \
  do {                                                                          \
    if (const cudaError_t mk_cuda_error = (expr); mk_cuda_error != cudaSuccess) \
      return ::mk::engine::cuda::CudaStatus(mk_cuda_error, what);               \
  } while (0)

namespace mk::engine::cuda {

// The device's address of registered, mapped host memory.
template <typename T>
absl::Status MappedDevicePointer(T* host, T** device, absl::string_view what) {
  void* mapped = nullptr;
  MK_CUDA_RETURN_IF_ERROR(cudaHostGetDevicePointer(&mapped, host, 0), what);
  *device = static_cast<T*>(mapped);
  return absl::OkStatus();
}

}  // namespace mk::engine::cuda

#endif  // MK_ENGINE_SRC_CUDA_CUDA_STATUS_H_
