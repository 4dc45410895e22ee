// The engine factory: the one place a backend is chosen.
#include "mk/engine/engine.h"

#include "absl/strings/str_cat.h"
#include "cpu/cpu_engine.h"
#include "offload/emulated_engine.h"

// The only place the CUDA engine's availability is decided at compile time.
#if MK_HAVE_CUDA
#include "cuda/cuda_engine.h"
#endif

namespace mk::engine {

absl::StatusOr<EngineOptions::Backend> ParseBackend(absl::string_view name) {
  if (name == "auto") return EngineOptions::Backend::kAuto;
  if (name == "cpu") return EngineOptions::Backend::kCpu;
  if (name == "cuda") return EngineOptions::Backend::kCuda;
  if (name == "cuda-emulated") return EngineOptions::Backend::kCudaEmulated;
  return absl::InvalidArgumentError(
      absl::StrCat("engine: unknown backend '", name, "'; use auto, cpu, cuda or cuda-emulated"));
}

const char* CompletionStatusName(CompletionStatus status) {
  switch (status) {
    case CompletionStatus::kDone:
      return "DONE";
    case CompletionStatus::kFault:
      return "FAULT";
    case CompletionStatus::kCancelled:
      return "CANCELLED";
  }
  return "INVALID";
}

absl::Status BackendAvailable(EngineOptions::Backend backend) {
  switch (backend) {
    case EngineOptions::Backend::kAuto:
    case EngineOptions::Backend::kCpu:
    case EngineOptions::Backend::kCudaEmulated:
      return absl::OkStatus();
    case EngineOptions::Backend::kCuda:
#if MK_HAVE_CUDA
      return cuda::ProbeDevice(nullptr);
#else
      return absl::UnavailableError(
          "engine: this build has no CUDA engine (nvcc was not found when it was built); use "
          "--engine=cpu or --engine=auto");
#endif
  }
  return absl::InvalidArgumentError("engine: unknown backend");
}

namespace {

template <typename T>
absl::StatusOr<std::unique_ptr<Engine>> Upcast(absl::StatusOr<std::unique_ptr<T>> engine) {
  if (!engine.ok()) return engine.status();
  return std::unique_ptr<Engine>(*std::move(engine));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(const EngineOptions& options) {
  if (!(options.max_tenant_partition_share > 0 && options.max_tenant_partition_share <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine: max_tenant_partition_share ", options.max_tenant_partition_share,
        " is not in (0, 1]; it is the most of a priority partition one tenant may hold"));
  }
  if (options.backend == EngineOptions::Backend::kCudaEmulated) {
    return offload::CreateEmulatedEngine(options);
  }
  bool cuda = options.backend == EngineOptions::Backend::kCuda;
  if (options.backend == EngineOptions::Backend::kAuto) {
    cuda = BackendAvailable(EngineOptions::Backend::kCuda).ok();
  }
  if (!cuda) return Upcast(cpu::CpuEngine::Create(options));
#if MK_HAVE_CUDA
  return Upcast(cuda::CudaEngine::Create(options));
#else
  return BackendAvailable(EngineOptions::Backend::kCuda);
#endif
}

}  // namespace mk::engine
