#include "offload/emulated_engine.h"

#include <algorithm>
#include <bit>

#include "absl/strings/str_cat.h"
#include "mk/base/status_macros.h"
#include "offload/host_thread_kernel.h"
#include "offload/offload_engine.h"

namespace mk::engine::offload {

namespace {

constexpr uint32_t kDefaultBlocks = 2;
constexpr uint32_t kMaxBlocks = 64;

class EmulatedEngine final : public OffloadEngine {
 public:
  EmulatedEngine(host::EngineMemory memory, OffloadConfig config, const EngineOptions& options)
      : OffloadEngine(std::move(memory), std::move(config), options) {}
  ~EmulatedEngine() override { ShutdownOnDestroy(); }

  absl::Status CreateKernel() {
    HostKernelConfig kernel;
    kernel.shape = config().queues;
    kernel.claim_limit = options_.claim_batch;
    protocol::IoHook checksum;
    if (loader_ != nullptr) checksum = loader_->Hook();
    MK_ASSIGN_OR_RETURN(std::unique_ptr<HostThreadKernel> port,
                        HostThreadKernel::Create(kernel, control_->control().layout(),
                                                 control_->debug_log_storage(),
                                                 control_->debug_log_records(), checksum));
    port->SetBuffers(buffers_.descriptors(), buffers_.capacity());
    InstallKernel(std::move(port));
    return absl::OkStatus();
  }
  using OffloadEngine::CreateLoader;

 protected:
  // Host threads can always be ended, unlike a GPU kernel: the emulated "unresponsive kernel"
  // (SimulateUnresponsiveExecutor) only ignored the engine's stop request. End it for real
  // (the destructor stops and joins its threads), so no thread outlives the engine's buffers it
  // reads (the control words, the debug log, the loader's hook). The engine still acts as one
  // whose kernel was lost.
  void AbandonKernel(std::unique_ptr<KernelPort> kernel) override { kernel.reset(); }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> CreateEmulatedEngine(const EngineOptions& options) {
  const uint32_t blocks = options.workers != 0 ? options.workers : kDefaultBlocks;
  if (blocks > kMaxBlocks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine: ", blocks, " emulated kernel blocks requested; use 0 (auto) .. ", kMaxBlocks));
  }
  OffloadConfig config = OffloadConfigFor("cuda-emulated", blocks, options);
  config.description = absl::StrCat("host threads emulating the persistent kernel: ", blocks,
                                    " blocks, ", config.queues.shards, " submission queues");
  MK_ASSIGN_OR_RETURN(host::EngineMemory memory, host::EngineMemory::Allocate(options));
  auto engine = std::make_unique<EmulatedEngine>(std::move(memory), std::move(config), options);
  MK_RETURN_IF_ERROR(engine->CreateLoader());
  MK_RETURN_IF_ERROR(engine->CreateKernel());
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace mk::engine::offload
