// DeviceState: the CUDA engine's KernelPort: every CUDA resource of one persistent kernel: the
// stream it runs on, the SubmissionQueues (host memory) registered as mapped memory, the
// engine's debug log registered likewise, and the device-memory claim counters and control copy.
// offload/kernel_abi.h says who reads and writes each buffer.
//
// Lifetime: created with the engine and destroyed after the kernel stopped. After a device
// reset (cudaDeviceReset destroys every resource of the context) the engine Abandon()s it and
// creates a fresh one. A kernel that cannot be stopped keeps this object (leaked): it reads the
// queues until the process ends. Thread safety: as KernelPort.
#ifndef MK_ENGINE_SRC_CUDA_DEVICE_STATE_H_
#define MK_ENGINE_SRC_CUDA_DEVICE_STATE_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "host/control_buffers.h"
#include "offload/kernel_abi.h"
#include "offload/kernel_port.h"

namespace mk::engine::cuda {

struct DeviceConfig {
  int device = 0;
  uint32_t threads = 0;  // per block
  uint32_t max_backoff_ns = 0;
  uint32_t scout_warps = 0;  // per block (kernel_abi.h)
};

class DeviceState final : public offload::KernelPort {
 public:
  // Allocates and registers everything; the kernel is not running yet. `control` must outlive
  // this state.
  static absl::StatusOr<std::unique_ptr<DeviceState>> Create(const DeviceConfig& config,
                                                             const offload::QueueShape& shape,
                                                             host::ControlBuffers& control);
  ~DeviceState() override;
  absl::Status Launch(const uint64_t* first_positions) override;
  absl::Status WaitStopped(absl::Time deadline) override;
  absl::Status KernelState() override;

  // The context was reset: the handles are gone; the destructor must not free them.
  void Abandon() { abandoned_ = true; }
  // Where the kernel finds resident resources (from the DeviceResidency); before Launch.
  void set_residency(const offload::ResidencyParams& residency) { params_.residency = residency; }

 private:
  DeviceState(const DeviceConfig& config, std::unique_ptr<offload::SubmissionQueues> queues,
              host::ControlBuffers& control);
  absl::Status Allocate();
  // Registers `region` with the device as mapped memory (remembered for the destructor).
  absl::Status Register(const offload::SubmissionQueues::Region& region, const char* what);

  const DeviceConfig config_;
  host::ControlBuffers& control_buffers_;
  bool abandoned_ = false;
  cudaStream_t stream_ = nullptr;
  uint8_t* registered_[3] = {};  // regions of queues() registered with the device
  int registered_count_ = 0;
  bool log_registered_ = false;
  // Device memory, one counter per shard, in the type CUDA's atomicCAS takes.
  unsigned long long* claim_ = nullptr;  // NOLINT(google-runtime-int)
  uint32_t* control_ = nullptr;          // device memory
  offload::KernelParams params_{};
};

}  // namespace mk::engine::cuda

#endif  // MK_ENGINE_SRC_CUDA_DEVICE_STATE_H_
