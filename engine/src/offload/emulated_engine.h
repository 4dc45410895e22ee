// The cuda-emulated engine: the CUDA engine's host side (OffloadEngine: dispatcher, reapers,
// helping waiters, teardown) with host threads in the persistent kernel's place
// (HostThreadKernel). It needs no GPU and no nvcc, so the delicate dispatch and reap code runs
// in every CI build, in the engine conformance suites and under ThreadSanitizer. Resident
// resources live in host memory, as on the CPU engine.
//
// --engine=cuda-emulated selects it; it serves the same protocol with the same results, more
// slowly than either real engine (it is a test vehicle, not a product backend).
#ifndef MK_ENGINE_SRC_OFFLOAD_EMULATED_ENGINE_H_
#define MK_ENGINE_SRC_OFFLOAD_EMULATED_ENGINE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "mk/engine/engine.h"

namespace mk::engine::offload {

// `options.workers`: kernel blocks (threads), 0 = 2; `options.cuda.submission_queues` as for
// the CUDA engine (0 = one per block).
absl::StatusOr<std::unique_ptr<Engine>> CreateEmulatedEngine(const EngineOptions& options);

}  // namespace mk::engine::offload

#endif  // MK_ENGINE_SRC_OFFLOAD_EMULATED_ENGINE_H_
