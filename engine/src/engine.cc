// The engine factory: the one place a backend is chosen.
#include "mk/engine/engine.h"

#include "absl/strings/str_cat.h"
#include "engine/src/cpu/cpu_engine.h"

namespace mk::engine {

absl::StatusOr<EngineOptions::Backend> ParseBackend(absl::string_view name) {
  if (name == "auto") return EngineOptions::Backend::kAuto;
  if (name == "cpu") return EngineOptions::Backend::kCpu;
  if (name == "cuda") return EngineOptions::Backend::kCuda;
  return absl::InvalidArgumentError(
      absl::StrCat("engine: unknown backend '", name, "'; use auto, cpu or cuda"));
}

const char* CompletionStatusName(CompletionStatus status) {
  switch (status) {
    case CompletionStatus::kDone: return "DONE";
    case CompletionStatus::kFault: return "FAULT";
    case CompletionStatus::kCancelled: return "CANCELLED";
  }
  return "INVALID";
}

absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(const EngineOptions& options) {
  switch (options.backend) {
    case EngineOptions::Backend::kCuda:
      return absl::UnavailableError(
          "engine: this build has no CUDA engine (it arrives with the CUDA-engine issue); use "
          "--engine=cpu or --engine=auto");
    case EngineOptions::Backend::kAuto:
    case EngineOptions::Backend::kCpu:
      break;
  }
  auto engine = cpu::CpuEngine::Create(options);
  if (!engine.ok()) return engine.status();
  return std::unique_ptr<Engine>(*std::move(engine));
}

}  // namespace mk::engine
