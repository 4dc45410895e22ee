#include "engine/src/cpu/cpu_engine.h"

#include <algorithm>
#include <array>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/src/host/publish_validation.h"
#include "mk/engine/atomics.h"
#include "mk/engine/opcode_registry.h"


namespace mk::engine::cpu {

namespace ctl = protocol::control;
using protocol::SlotStatus;


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
    : host_(std::move(host)),
      loader_(std::move(loader)),
      options_(options),
      worker_count_(options.workers != 0
                        ? options.workers
                        : std::max(1u, std::thread::hardware_concurrency() - 1)),
      scheduler_(host_.get(), [this] { WakeWorkers(); }) {}

CpuEngine::~CpuEngine() {
  if (!shut_down_.load()) Shutdown().IgnoreError();
}

absl::Status CpuEngine::Start() {
  if (started_.exchange(true)) {
    return absl::FailedPreconditionError("engine: Start called twice");
  }
  if (shut_down_.load()) return absl::FailedPreconditionError("engine: already shut down");
  StartWorkers();
  return absl::OkStatus();
}

void CpuEngine::StartWorkers() {
  workers_.reserve(worker_count_);
  for (uint32_t i = 0; i < worker_count_; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

void CpuEngine::StopWorkers() {
  stop_.store(true, std::memory_order_seq_cst);
  host_->control().RequestShutdown();
  WakeWorkers();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

absl::Status CpuEngine::CheckLoader() const {
  if (loader_ != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "engine: no resource root is configured; start the server with --resource_root=DIR");
}

absl::StatusOr<uint32_t> CpuEngine::RegisterResource(uint32_t tenant, const std::string& path,
                                                     uint64_t offset, uint64_t length) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = CheckLoader(); !s.ok()) return s;
  return loader_->Register(tenant, path, offset, length);
}

absl::StatusOr<std::vector<ResourceInfo>> CpuEngine::ListResources(uint32_t tenant) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = CheckLoader(); !s.ok()) return s;
  return loader_->List(tenant);
}

absl::Status CpuEngine::EvictResource(uint32_t tenant, uint32_t resource_id) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = CheckLoader(); !s.ok()) return s;
  return loader_->Evict(tenant, resource_id);
}

absl::Status CpuEngine::Restart() {
  std::lock_guard<std::mutex> lock(shutdown_mu_);
  if (shut_down_.load()) return absl::FailedPreconditionError("engine: restart after shutdown");
  restarts_.fetch_add(1);  // counted before the in-flight slots fail, so their FAULTs see it
  StopWorkers();
  scheduler_.Clear();
  {
    host::CompletionBatcher batcher(host_.get());
    host_->FailInFlight(&batcher);
  }
  host_->control().Store(ctl::kShutdown, 0);
  paused_.store(false);
  stop_.store(false, std::memory_order_seq_cst);
  if (started_.load()) StartWorkers();
  NotifyProgress();
  return absl::OkStatus();
}

void CpuEngine::SetExecutionPausedForTesting(bool paused) {
  paused_.store(paused, std::memory_order_seq_cst);
  WakeWorkers();
}

absl::Status CpuEngine::CheckTenant(uint32_t tenant) const {
  if (tenant < options_.max_tenants) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("engine: tenant ", tenant,
                                                 " out of range; this engine serves tenants 0..",
                                                 options_.max_tenants - 1));
}

bool CpuEngine::TenantEnabled(uint32_t tenant) const {
  return host_->control().Load(host_->control().layout().MaskBase() + tenant) != 0;
}

absl::StatusOr<PublishResult> CpuEngine::Publish(uint32_t tenant,
                                                 absl::Span<const SlotPayload> slots,
                                                 const PublishOptions& options) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (!accepting_.load(std::memory_order_acquire)) {
    return absl::UnavailableError(
        "engine: draining or shut down; no new work is accepted (retry on another instance)");
  }
  if (!TenantEnabled(tenant)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "engine: tenant ", tenant, " is disabled; an admin must enable it before it publishes"));
  }
  if (absl::Status s = host::ValidatePublish(slots); !s.ok()) return s;
  auto result = host_->Publish(tenant, slots, options.sink);
  // One claim batch needs one worker: waking every parked worker for it is a thundering herd.
  if (result.ok()) WakeWorkers(/*all=*/slots.size() > options_.claim_batch);
  return result;
}

absl::StatusOr<std::vector<Completion>> CpuEngine::WaitFor(uint32_t tenant,
                                                           absl::Span<const uint64_t> tickets,
                                                           absl::Time deadline) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = host_->CheckTicketsIssued(tenant, tickets); !s.ok()) return s;
  return host_->store().Take(tenant, tickets, deadline);
}

absl::Status CpuEngine::WaitForAsync(uint32_t tenant, absl::Span<const uint64_t> tickets,
                                     absl::Time deadline, CompletionsCallback done) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = host_->CheckTicketsIssued(tenant, tickets); !s.ok()) return s;
  host_->WaitForAsync(tenant, tickets, deadline, std::move(done));
  return absl::OkStatus();
}

void CpuEngine::ReturnCompletions(absl::Span<const Completion> completions) {
  if (!completions.empty()) host_->store().Return(completions);
}

absl::StatusOr<uint32_t> CpuEngine::Cancel(uint32_t tenant, absl::Span<const uint64_t> tickets) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  uint32_t cancelled;
  {
    host::CompletionBatcher batcher(host_.get());
    cancelled = host_->CancelTickets(tenant, tickets, &batcher);
  }
  NotifyProgress();
  return cancelled;
}

absl::Status CpuEngine::SetTenantEnabled(uint32_t tenant, bool enabled) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = host_->control().SetTenantEnabled(tenant, enabled); !s.ok()) return s;
  if (enabled) scheduler_.OnTenantEnabled(tenant);
  return absl::OkStatus();
}

absl::Status CpuEngine::Telemetry(absl::Span<const uint32_t> window_opcodes,
                                  TelemetrySnapshot* out) {
  if (!window_opcodes.empty()) {  // windows need every slot's words: the full decode
    return DecodeTelemetry(host_->ring().words(), host_->control().words(), window_opcodes, out);
  }
  host_->CountOccupancy(&out->occupancy);
  if (absl::Status s = DecodeControl(host_->control().words(), &out->control); !s.ok()) return s;
  DeriveCounters(out->occupancy, out->control, &out->counters);
  out->windows.clear();
  return absl::OkStatus();
}

absl::Status CpuEngine::ReadDebugLog(DebugLogContents* out) {
  return DecodeDebugLog(host_->debug_log(), out);
}

void CpuEngine::NotifyProgress() {
  if (draining_flag_.load(std::memory_order_seq_cst)) {
    std::lock_guard<std::mutex> lock(drain_mu_);
    drain_cv_.notify_all();
  }
}

absl::StatusOr<EngineCounters> CpuEngine::Drain(absl::Time deadline) {
  accepting_.store(false, std::memory_order_seq_cst);
  draining_flag_.store(true, std::memory_order_seq_cst);
  // Slots of disabled tenants can never run: cancel them, and from now on instead of parking.
  {
    host::CompletionBatcher batcher(host_.get());
    scheduler_.BeginDrain(&batcher);
  }
  if (!started_.load()) {
    return absl::FailedPreconditionError(
        "engine: Drain before Start; nothing executes the accepted slots (Start, or Shutdown)");
  }
  std::unique_lock<std::mutex> lock(drain_mu_);
  bool drained = host_->in_flight() == 0;
  while (!drained && absl::Now() < deadline) {
    const auto until = absl::ToChronoTime(std::min(deadline, absl::Now() + absl::Minutes(1)));
    drained = drain_cv_.wait_until(lock, until, [this] { return host_->in_flight() == 0; });
  }
  if (!drained) {
    return absl::DeadlineExceededError(absl::StrCat(
        "engine: drain deadline passed with ", host_->in_flight(),
        " slots still in flight; call Drain again or Shutdown to fail them"));
  }
  return host_->counters();
}

absl::StatusOr<EngineCounters> CpuEngine::Shutdown() {
  std::lock_guard<std::mutex> lock(shutdown_mu_);
  if (shut_down_.load()) return host_->counters();
  accepting_.store(false, std::memory_order_seq_cst);
  StopWorkers();
  {
    host::CompletionBatcher batcher(host_.get());
    host_->FailInFlight(&batcher);
  }
  scheduler_.Clear();
  shut_down_.store(true);
  NotifyProgress();
  return host_->counters();
}

EngineCounters CpuEngine::counters() const {
  EngineCounters c = host_->counters();
  c.parked_workers = sleepers_.load(std::memory_order_acquire);
  c.parked_slots = scheduler_.parked_count();
  c.done_count = host_->control().done_count();
  return c;
}

void CpuEngine::Stats(EngineStats* out) const {
  host_->Stats(out);
  out->restarts = restarts_.load();
  if (loader_ != nullptr) loader_->Stats(&out->io);
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
