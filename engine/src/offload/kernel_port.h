// KernelPort: the device calls of an offload engine's host side, behind one small interface:
// whatever plays the persistent kernel's part over the SubmissionQueues. Two implementations:
// the CUDA engine's DeviceState (a persistent kernel on a GPU) and HostThreadKernel (host
// threads; the cuda-emulated engine, which runs the same dispatcher and reapers on machines
// without a GPU and under ThreadSanitizer).
//
// Only cold paths go through the interface (launch, stop, health); the dispatcher and reapers
// write entries and read completion records through queues() directly.
//
// Thread safety: Launch, WaitStopped and destruction are called by the engine's teardown path
// only (serialized); KernelState from any thread. Lifetime: the port owns its queues.
#ifndef MK_ENGINE_SRC_OFFLOAD_KERNEL_PORT_H_
#define MK_ENGINE_SRC_OFFLOAD_KERNEL_PORT_H_

#include <cstdint>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "offload/submission_queues.h"

namespace mk::engine::offload {

class KernelPort {
 public:
  virtual ~KernelPort() = default;
  KernelPort(const KernelPort&) = delete;
  KernelPort& operator=(const KernelPort&) = delete;

  // The queues this kernel serves.
  SubmissionQueues& queues() const { return *queues_; }
  // Starts the kernel, shard s serving from position first_positions[s] (the queues' flags are
  // reset first). The kernel runs until queues().RequestStop().
  virtual absl::Status Launch(const uint64_t* first_positions) = 0;
  // OK once the kernel has exited; its error if it failed; DEADLINE_EXCEEDED if it still runs.
  virtual absl::Status WaitStopped(absl::Time deadline) = 0;
  // OK while the kernel runs; FAILED_PRECONDITION if it exited; its error if it failed.
  virtual absl::Status KernelState() = 0;

 protected:
  explicit KernelPort(std::unique_ptr<SubmissionQueues> queues) : queues_(std::move(queues)) {}

 private:
  const std::unique_ptr<SubmissionQueues> queues_;
};

}  // namespace mk::engine::offload

#endif  // MK_ENGINE_SRC_OFFLOAD_KERNEL_PORT_H_
