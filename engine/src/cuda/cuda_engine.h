// The CUDA engine: one persistent kernel (megakernel.cu) executes the ring's slots for the life
// of the engine (relaunched only by a watchdog restart); no kernel is launched per request.
// The host side (dispatcher, reapers, teardown) is the OffloadEngine's, shared with the
// cuda-emulated engine; this class adds the GPU: DeviceState (the KernelPort that launches and
// watches the kernel over mapped submission queues), DeviceResidency (resident resources in
// device memory, which the kernel reads for LOAD_MISS and CHECKSUM), and recovery from a failed
// kernel (device reset, then every device resource rebuilt).
//
// Thread safety: as OffloadEngine. Recovery runs on the teardown path, under the engine's
// kernel lock.
#ifndef MK_ENGINE_SRC_CUDA_CUDA_ENGINE_H_
#define MK_ENGINE_SRC_CUDA_CUDA_ENGINE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cuda/device_state.h"
#include "offload/offload_engine.h"

namespace mk::engine::cuda {

class DeviceResidency;

// OK when a CUDA device this build can run on is present (and names it in `name`);
// UNAVAILABLE with the reason otherwise.
absl::Status ProbeDevice(std::string* name);

class CudaEngine final : public offload::OffloadEngine {
 public:
  static absl::StatusOr<std::unique_ptr<CudaEngine>> Create(const EngineOptions& options);
  ~CudaEngine() override;

 private:
  CudaEngine(host::EngineMemory memory, offload::OffloadConfig config, DeviceConfig device,
             const EngineOptions& options);
  // A DeviceState for the current context, told where the resident resources are, installed as
  // the engine's kernel.
  absl::Status CreateDeviceState();
  absl::Status RecoverFailedKernel(std::unique_ptr<offload::KernelPort> failed,
                                   const absl::Status& failure) override;
  void AbandonKernel(std::unique_ptr<offload::KernelPort> kernel) override;

  const DeviceConfig device_config_;
  // Owned by loader_ (null without a resource root); rebuilt after a device reset.
  DeviceResidency* residency_ = nullptr;
};

}  // namespace mk::engine::cuda

#endif  // MK_ENGINE_SRC_CUDA_CUDA_ENGINE_H_
