#include "cuda/cuda_engine.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cuda/cuda_status.h"
#include "cuda/device_residency.h"
#include "cuda/megakernel.h"
#include "mk/base/log.h"
#include "mk/base/status_macros.h"

namespace mk::engine::cuda {

namespace {

constexpr int kDevice = 0;
// Few pollers (docs/design.md, the measured floors: 1-8 blocks), each its submission queue's
// only poller by default, so it claims from shared memory instead of a device-memory atomic
// (docs/performance.md).
constexpr uint32_t kDefaultBlocks = 8;

// The block shape for `options`: workers enough for one claim batch (whole warps), plus the
// scouts, within one block.
DeviceConfig DeviceConfigFor(const EngineOptions& options) {
  DeviceConfig config;
  config.device = kDevice;
  config.threads = std::min<uint32_t>(
      (options.claim_batch + 31) / 32 * 32 + 32 * offload::kScoutWarps, kMaxThreadsPerBlock);
  config.scout_warps = options.cuda.scout_warps ? offload::ScoutWarps(config.threads) : 0;
  config.max_backoff_ns = options.cuda.max_backoff_ns;
  return config;
}

// How many blocks of `threads` threads can be resident at once (a persistent kernel needs all).
absl::StatusOr<uint32_t> CoResidentBlocks(uint32_t threads) {
  int per_sm = 0;
  MK_CUDA_RETURN_IF_ERROR(MegakernelBlocksPerMultiprocessor(static_cast<int>(threads), &per_sm),
                          "sizing the megakernel");
  int sms = 0;
  MK_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, kDevice),
                          "reading the multiprocessor count");
  return static_cast<uint32_t>(per_sm * sms);
}

}  // namespace

absl::Status ProbeDevice(std::string* name) {
  // A persistent kernel and lazy module loading deadlock: loading a module while the kernel runs
  // waits for the context to go idle, which it never does. Load every module at first use of
  // CUDA instead (unless the operator chose otherwise). This runs before the first CUDA call,
  // while the process starts its engine, and only the CUDA runtime reads the variable.
  setenv("CUDA_MODULE_LOADING", "EAGER", /*overwrite=*/0);  // NOLINT(concurrency-mt-unsafe)
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    return CudaStatus(e, "looking for a CUDA device", "run --engine=cpu on machines without a GPU");
  }
  if (count == 0) {
    return absl::UnavailableError("cuda: no CUDA device is present; run --engine=cpu");
  }
  cudaDeviceProp prop;
  MK_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, kDevice), "reading device properties");
  if (prop.major < 9 || !prop.canMapHostMemory || !prop.unifiedAddressing) {
    return absl::UnavailableError(
        absl::StrCat("cuda: device 0 (", prop.name, ", sm_", prop.major, prop.minor,
                     ") cannot run this build (needs sm_90 or newer with mapped host memory); run "
                     "--engine=cpu"));
  }
  if (name != nullptr) {
    *name = absl::StrCat(prop.name, " (sm_", prop.major, prop.minor, ", ", prop.multiProcessorCount,
                         " SMs)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CudaEngine>> CudaEngine::Create(const EngineOptions& options) {
  if (options.claim_batch == 0 || options.claim_batch > kMaxThreadsPerBlock) {
    return absl::InvalidArgumentError(absl::StrCat("engine: claim_batch ", options.claim_batch,
                                                   " out of range; use 1..1024 (the most a "
                                                   "CUDA engine block claims at once)"));
  }
  std::string device_name;
  MK_RETURN_IF_ERROR(ProbeDevice(&device_name));
  MK_CUDA_RETURN_IF_ERROR(cudaSetDevice(kDevice), "cudaSetDevice");
  const DeviceConfig device = DeviceConfigFor(options);
  MK_ASSIGN_OR_RETURN(const uint32_t co_resident, CoResidentBlocks(device.threads));
  const uint32_t blocks = options.workers != 0 ? options.workers : kDefaultBlocks;
  if (co_resident == 0 || blocks > co_resident) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine: ", blocks, " blocks of ", device.threads, " threads requested but only ",
        co_resident, " can be resident at once on ", device_name,
        "; a persistent kernel needs every block resident: lower --workers"));
  }
  offload::OffloadConfig config = offload::OffloadConfigFor("cuda", blocks, options);
  config.description = absl::StrCat(device_name, ": persistent kernel, ", blocks, " blocks x ",
                                    device.threads, " threads (", device.scout_warps,
                                    " scout warps), ", config.queues.shards, " submission queues");
  MK_ASSIGN_OR_RETURN(host::EngineMemory memory, host::EngineMemory::Allocate(options));
  std::unique_ptr<CudaEngine> engine(
      new CudaEngine(std::move(memory), std::move(config), device, options));
  MK_RETURN_IF_ERROR(engine->CreateLoader(
      [&](io::FileReader& reader) -> absl::StatusOr<std::unique_ptr<host::ResidencyStore>> {
        auto store = DeviceResidency::Create(options.residency_budget_bytes, blocks, reader);
        if (!store.ok()) return store.status();
        engine->residency_ = store->get();
        return std::unique_ptr<host::ResidencyStore>(*std::move(store));
      }));
  MK_RETURN_IF_ERROR(engine->CreateDeviceState());
  return engine;
}

CudaEngine::CudaEngine(host::EngineMemory memory, offload::OffloadConfig config,
                       DeviceConfig device, const EngineOptions& options)
    : OffloadEngine(std::move(memory), std::move(config), options), device_config_(device) {}

CudaEngine::~CudaEngine() { ShutdownOnDestroy(); }

absl::Status CudaEngine::CreateDeviceState() {
  MK_ASSIGN_OR_RETURN(std::unique_ptr<DeviceState> device,
                      DeviceState::Create(device_config_, config().queues, *control_));
  if (residency_ != nullptr) device->set_residency(residency_->params());
  InstallKernel(std::move(device));
  return absl::OkStatus();
}

void CudaEngine::AbandonKernel(std::unique_ptr<offload::KernelPort> kernel) {
  // The kernel still reads resident bytes and its queues: nothing of the residency or the
  // device state may be freed through CUDA (that would wait for the kernel forever). Leaked;
  // the process's exit ends the kernel with its context.
  if (residency_ != nullptr) residency_->Abandon();
  OffloadEngine::AbandonKernel(std::move(kernel));
}

absl::Status CudaEngine::RecoverFailedKernel(std::unique_ptr<offload::KernelPort> failed,
                                             const absl::Status& /*failure: logged already*/) {
  // A sticky error poisons the context; nothing runs any more. Tear the context down and
  // rebuild every device resource.
  if (loader_ != nullptr) {
    base::LogWarning("cuda: recovery: letting resource loads in flight finish");
    // The reset takes the resident copies with it: let loads in flight land first (copies do
    // not need the kernel), then forget every resident resource.
    if (absl::Status s = loader_->ForgetResidents(absl::Now() + options_.cuda.stop_timeout);
        !s.ok()) {
      base::LogError(s.message());
    }
  }
  // Its handles die with the context: destroy it without releasing them.
  static_cast<DeviceState&>(*failed).Abandon();
  failed.reset();
  base::LogWarning("cuda: recovery: resetting the device");
  if (cudaError_t e = cudaDeviceReset(); e != cudaSuccess) {
    return CudaStatus(e, "resetting the device after a failed kernel", "restart megakerneld");
  }
  base::LogWarning("cuda: recovery: device reset; rebuilding its resources");
  if (residency_ != nullptr) MK_RETURN_IF_ERROR(residency_->Rebuild());
  MK_RETURN_IF_ERROR(CreateDeviceState());
  base::LogWarning("cuda: recovery: rebuilt; the kernel is launched again");
  return absl::OkStatus();
}

}  // namespace mk::engine::cuda
