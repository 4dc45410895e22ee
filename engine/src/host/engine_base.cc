#include "host/engine_base.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "host/publish_validation.h"

namespace mk::engine::host {

namespace ctl = protocol::control;

EngineBase::EngineBase(std::unique_ptr<RingHost> host, std::unique_ptr<ResourceLoader> loader,
                       const EngineOptions& options)
    : host_(std::move(host)),
      loader_(std::move(loader)),
      options_(options),
      scheduler_(host_.get(), [this] { OnReady(); }) {}

void EngineBase::ShutdownOnDestroy() {
  if (!shut_down_.load()) Shutdown().IgnoreError();
}

absl::Status EngineBase::Start() {
  std::lock_guard<std::mutex> lock(shutdown_mu_);
  if (shut_down_.load()) return absl::FailedPreconditionError("engine: already shut down");
  if (started_.exchange(true)) {
    return absl::FailedPreconditionError("engine: Start called twice");
  }
  if (absl::Status s = StartExecutor(); !s.ok()) {
    started_.store(false);
    return s;
  }
  executor_starts_.fetch_add(1);
  return absl::OkStatus();
}

absl::Status EngineBase::CheckTenant(uint32_t tenant) const {
  if (tenant < options_.max_tenants) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("engine: tenant ", tenant,
                                                 " out of range; this engine serves tenants 0..",
                                                 options_.max_tenants - 1));
}

absl::Status EngineBase::CheckLoader() const {
  if (loader_ != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(no_loader_reason_);
}

bool EngineBase::TenantEnabled(uint32_t tenant) const { return host_->TenantEnabled(tenant); }

absl::StatusOr<PublishResult> EngineBase::Publish(uint32_t tenant,
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
  if (absl::Status s = ValidatePublish(slots); !s.ok()) return s;
  auto result = host_->Publish(tenant, slots, options.sink);
  if (result.ok()) OnPublished(slots.size());
  return result;
}

absl::StatusOr<std::vector<Completion>> EngineBase::WaitFor(uint32_t tenant,
                                                            absl::Span<const uint64_t> tickets,
                                                            absl::Time deadline) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = host_->CheckTicketsIssued(tenant, tickets); !s.ok()) return s;
  return host_->store().Take(tenant, tickets, deadline,
                             [this](absl::FunctionRef<bool()> arrived, absl::Time until) {
                               HelpWhileWaiting(arrived, until);
                             });
}

absl::Status EngineBase::WaitForAsync(uint32_t tenant, absl::Span<const uint64_t> tickets,
                                      absl::Time deadline, CompletionsCallback done) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = host_->CheckTicketsIssued(tenant, tickets); !s.ok()) return s;
  host_->WaitForAsync(tenant, tickets, deadline, std::move(done));
  return absl::OkStatus();
}

void EngineBase::ReturnCompletions(absl::Span<const Completion> completions) {
  if (!completions.empty()) host_->store().Return(completions);
}

absl::StatusOr<uint32_t> EngineBase::Cancel(uint32_t tenant, absl::Span<const uint64_t> tickets) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  uint32_t cancelled;
  {
    CompletionBatcher batcher(host_.get());
    cancelled = host_->CancelTickets(tenant, tickets, &batcher);
  }
  NotifyProgress();
  return cancelled;
}

absl::Status EngineBase::SetTenantEnabled(uint32_t tenant, bool enabled) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = host_->SetTenantEnabled(tenant, enabled); !s.ok()) return s;
  if (enabled) scheduler_.OnTenantEnabled(tenant);
  return absl::OkStatus();
}

absl::Status EngineBase::Telemetry(absl::Span<const uint32_t> window_opcodes,
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

absl::Status EngineBase::ReadDebugLog(DebugLogContents* out) {
  return DecodeDebugLog(host_->debug_log(), out);
}

absl::StatusOr<uint32_t> EngineBase::RegisterResource(uint32_t tenant, const std::string& path,
                                                      uint64_t offset, uint64_t length) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = CheckLoader(); !s.ok()) return s;
  return loader_->Register(tenant, path, offset, length);
}

absl::StatusOr<std::vector<ResourceInfo>> EngineBase::ListResources(uint32_t tenant) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = CheckLoader(); !s.ok()) return s;
  return loader_->List(tenant);
}

absl::Status EngineBase::EvictResource(uint32_t tenant, uint32_t resource_id) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = CheckLoader(); !s.ok()) return s;
  return loader_->Evict(tenant, resource_id);
}

bool EngineBase::FinishClaimed(uint32_t index, const protocol::ExecResult& r,
                               ControlCounters& counters) {
  using protocol::SlotStatus;
  uint32_t* w = host_->ring().slot(index);
  std::atomic_ref<uint32_t> status = StatusWord(w);
  switch (r.status) {
    case SlotStatus::kDone:
    case SlotStatus::kFault: {
      std::copy(r.results, r.results + r.result_count, w + protocol::kWordArg0);
      std::fill(w + protocol::kWordArg0 + r.result_count, w + protocol::kSlotWords, 0u);
      const uint32_t fence = host_->meta(index).fence_waiter;  // read before it is reapable
      status.store(static_cast<uint32_t>(r.status), std::memory_order_release);
      counters.CountOutcome(w[protocol::kWordOpcode]);
      if (fence != kNoFence && host_->ReleaseFence(fence)) scheduler_.PushReady(fence);
      return true;
    }
    case SlotStatus::kRequeue:
      status.store(static_cast<uint32_t>(SlotStatus::kRequeue), std::memory_order_release);
      scheduler_.PushReady(index);
      return false;
    default: {
      uint32_t claimed = static_cast<uint32_t>(SlotStatus::kClaimed);
      status.compare_exchange_strong(claimed, static_cast<uint32_t>(r.status),
                                     std::memory_order_acq_rel);
      return false;
    }
  }
}

void EngineBase::NotifyProgress() {
  if (draining_.load(std::memory_order_seq_cst)) {
    std::lock_guard<std::mutex> lock(drain_mu_);
    drain_cv_.notify_all();
  }
}

absl::StatusOr<EngineCounters> EngineBase::Drain(absl::Time deadline) {
  accepting_.store(false, std::memory_order_seq_cst);
  draining_.store(true, std::memory_order_seq_cst);
  // Slots of disabled tenants can never run: cancel them, and from now on instead of parking.
  {
    CompletionBatcher batcher(host_.get());
    scheduler_.BeginDrain(&batcher);
  }
  if (!started()) {
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

absl::StatusOr<EngineCounters> EngineBase::Shutdown() {
  std::lock_guard<std::mutex> lock(shutdown_mu_);
  if (shut_down_.load()) return host_->counters();
  accepting_.store(false, std::memory_order_seq_cst);
  absl::Status stopped = started() ? StopExecutor() : absl::OkStatus();
  scheduler_.Clear();
  {
    CompletionBatcher batcher(host_.get());
    host_->FailInFlight(&batcher);
  }
  shut_down_.store(true);
  NotifyProgress();
  if (!stopped.ok()) return stopped;
  return host_->counters();
}

absl::Status EngineBase::Restart() {
  std::lock_guard<std::mutex> lock(shutdown_mu_);
  if (shut_down_.load()) return absl::FailedPreconditionError("engine: restart after shutdown");
  restarts_.fetch_add(1);  // counted before the in-flight slots fail, so their FAULTs see it
  absl::Status stopped = started() ? StopExecutor() : absl::OkStatus();
  scheduler_.Clear();
  {
    CompletionBatcher batcher(host_.get());
    host_->FailInFlight(&batcher);
  }
  host_->control().Store(ctl::kShutdown, 0);
  SetExecutionPausedForTesting(false);
  absl::Status restarted = stopped.ok() && started() ? StartExecutor() : absl::OkStatus();
  if (restarted.ok() && started()) executor_starts_.fetch_add(1);
  NotifyProgress();
  return stopped.ok() ? restarted : stopped;
}

EngineCounters EngineBase::counters() const {
  EngineCounters c = host_->counters();
  c.parked_workers = ParkedWorkers();
  c.parked_slots = scheduler_.parked_count();
  c.done_count = host_->control().done_count();
  return c;
}

void EngineBase::Stats(EngineStats* out) const {
  host_->Stats(out);
  out->restarts = restarts_.load();
  out->executor_starts = executor_starts_.load();
  if (loader_ != nullptr) loader_->Stats(&out->io);
}

}  // namespace mk::engine::host
