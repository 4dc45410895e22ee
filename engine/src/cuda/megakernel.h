// Launch entry points of the persistent kernel (megakernel.cu), for the host side.
#ifndef MK_ENGINE_SRC_CUDA_MEGAKERNEL_H_
#define MK_ENGINE_SRC_CUDA_MEGAKERNEL_H_

#include <cuda_runtime_api.h>

#include "offload/kernel_abi.h"

namespace mk::engine::cuda {

// Most threads per block the kernel is compiled for (its __launch_bounds__).
inline constexpr int kMaxThreadsPerBlock = 1024;

// Launches `blocks` x `threads` persistent blocks on `stream`; they run until doorbell->stop.
cudaError_t LaunchMegakernel(const offload::KernelParams& params, int blocks, int threads,
                             cudaStream_t stream);
// How many blocks of `threads` threads fit on one multiprocessor at once.
cudaError_t MegakernelBlocksPerMultiprocessor(int threads, int* blocks);

}  // namespace mk::engine::cuda

#endif  // MK_ENGINE_SRC_CUDA_MEGAKERNEL_H_
