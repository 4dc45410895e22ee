#include "cpu/cpu_engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace mk::engine::cpu {

absl::StatusOr<std::unique_ptr<CpuEngine>> CpuEngine::Create(const EngineOptions& options) {
  if (options.claim_batch == 0 || options.claim_batch > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine: claim_batch ", options.claim_batch, " out of range; use 1..1024"));
  }
  if (options.workers > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine: ", options.workers, " workers requested; use 0 (auto) .. 256"));
  }
  auto host = host::RingHost::Create(options);
  if (!host.ok()) return host.status();
  std::unique_ptr<host::ResourceLoader> loader;
  if (!options.resource_root.empty()) {
    auto created = host::ResourceLoader::Create(options, host->get());
    if (!created.ok()) return created.status();
    loader = *std::move(created);
  }
  return std::unique_ptr<CpuEngine>(new CpuEngine(*std::move(host), std::move(loader), options));
}

CpuEngine::CpuEngine(std::unique_ptr<host::RingHost> host,
                     std::unique_ptr<host::ResourceLoader> loader, const EngineOptions& options)
    : EngineBase(std::move(host), std::move(loader), options),
      worker_count_(options.workers != 0
                        ? options.workers
                        : std::max(1u, std::thread::hardware_concurrency() - 1)) {}

CpuEngine::~CpuEngine() { ShutdownOnDestroy(); }

absl::Status CpuEngine::StartExecutor() {
  stop_.store(false, std::memory_order_seq_cst);
  workers_.reserve(worker_count_);
  for (uint32_t i = 0; i < worker_count_; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  return absl::OkStatus();
}

absl::Status CpuEngine::StopExecutor() {
  stop_.store(true, std::memory_order_seq_cst);
  host_->control().RequestShutdown();
  WakeWorkers();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  return absl::OkStatus();
}

void CpuEngine::SetExecutionPausedForTesting(bool paused) {
  paused_.store(paused, std::memory_order_seq_cst);
  WakeWorkers();
}

EngineInfo CpuEngine::info() const {
  EngineInfo i;
  i.backend = "cpu";
  i.device = absl::StrCat("host CPU, ", worker_count_, " worker threads");
  i.ring_slots = host_->slot_count();
  i.workers = worker_count_;
  i.max_tenants = options_.max_tenants;
  i.scratch_words = options_.scratch_words;
  return i;
}

}  // namespace mk::engine::cpu
