#include "cpu/cpu_engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "mk/base/status_macros.h"

namespace mk::engine::cpu {

absl::StatusOr<std::unique_ptr<CpuEngine>> CpuEngine::Create(const EngineOptions& options) {
  if (options.workers > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine: ", options.workers, " workers requested; use 0 (auto) .. 256"));
  }
  MK_ASSIGN_OR_RETURN(host::EngineMemory memory, host::EngineMemory::Allocate(options));
  std::unique_ptr<CpuEngine> engine(new CpuEngine(std::move(memory), options));
  MK_RETURN_IF_ERROR(engine->CreateLoader());
  return engine;
}

CpuEngine::CpuEngine(host::EngineMemory memory, const EngineOptions& options)
    : EngineBase(std::move(memory), options),
      worker_count_(options.workers != 0 ? options.workers
                                         : std::max(1u, std::thread::hardware_concurrency() - 1)) {}

CpuEngine::~CpuEngine() { ShutdownOnDestroy(); }

absl::Status CpuEngine::StartExecutor() {
  stop_.store(false, std::memory_order_seq_cst);
  quiescent_workers_.store(0, std::memory_order_seq_cst);
  workers_.reserve(worker_count_);
  for (uint32_t i = 0; i < worker_count_; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  return absl::OkStatus();
}

absl::Status CpuEngine::StopExecutor() {
  stop_.store(true, std::memory_order_seq_cst);
  control_->control().RequestShutdown();
  WakeWorkers();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  return absl::OkStatus();
}

void CpuEngine::PauseExecutor(bool paused) {
  paused_.store(paused, std::memory_order_seq_cst);
  WakeWorkers();
  if (!paused) return;
  // Called from the thread that started the engine (tests), so workers_ is stable here.
  const auto target = static_cast<uint32_t>(workers_.size());
  for (uint32_t n = quiescent_workers_.load(std::memory_order_seq_cst); n < target;
       n = quiescent_workers_.load(std::memory_order_seq_cst)) {
    quiescent_workers_.wait(n, std::memory_order_seq_cst);
  }
}

EngineInfo CpuEngine::info() const {
  EngineInfo i;
  i.backend = "cpu";
  i.device = absl::StrCat("host CPU, ", worker_count_, " worker threads");
  i.ring_slots = ring_->slot_count();
  i.workers = worker_count_;
  i.max_tenants = options_.max_tenants;
  i.scratch_words = options_.scratch_words;
  return i;
}

}  // namespace mk::engine::cpu
