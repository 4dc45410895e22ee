#include "host/engine_base.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "host/publish_validation.h"
#include "mk/base/status_macros.h"

namespace mk::engine::host {

namespace ctl = protocol::control;

absl::StatusOr<EngineMemory> EngineMemory::Allocate(const EngineOptions& options) {
  if (options.claim_batch == 0 || options.claim_batch > kMaxClaimBatch) {
    return absl::InvalidArgumentError(absl::StrCat("engine: claim_batch ", options.claim_batch,
                                                   " out of range; use 1..", kMaxClaimBatch));
  }
  EngineMemory memory;
  MK_ASSIGN_OR_RETURN(memory.ring,
                      PartitionedRing::Create(options.ring_slots, options.partition_weights));
  MK_ASSIGN_OR_RETURN(memory.control,
                      ControlBuffers::Create(options.max_tenants, options.scratch_words,
                                             options.debug_log_records));
  memory.control->RecordPartitions(*memory.ring);
  return memory;
}

EngineBase::EngineBase(EngineMemory memory, const EngineOptions& options)
    : options_(options),
      control_(std::move(memory.control)),
      ring_(std::move(memory.ring)),
      tenants_(control_->control(), options.max_tenants),
      tickets_(options.max_tenants),
      ledger_(options.max_tenants, options.collect_latency),
      store_(options.max_tenants, options.completion_ttl),
      shares_(options.max_tenants, ring_->partition_sizes(),
              options.max_outstanding_slots_per_tenant, options.fair_share,
              options.max_tenant_partition_share),
      buffers_(BufferTable::Limits{.max_tenants = options.max_tenants,
                                   .max_per_tenant = options.max_buffers_per_tenant,
                                   .tenant_bytes = options.tenant_buffer_bytes,
                                   .total_bytes = options.buffer_budget_bytes},
               &buffer_memory_, ring_.get()),
      reaper_(*ring_, *control_, ledger_, store_),
      publisher_(*ring_, tickets_, ledger_, store_, shares_, options.max_stored_completions,
                 options.max_stored_completions_per_tenant),
      scheduler_(*ring_, *control_, tenants_, reaper_, [this] { OnReady(); }) {
  ring_->AttachShares(&shares_);
}

absl::Status EngineBase::CreateLoader(const ResourceLoader::StoreFactory& make_store) {
  if (options_.resource_root.empty()) return absl::OkStatus();
  MK_ASSIGN_OR_RETURN(loader_, ResourceLoader::Create(options_, *ring_, reaper_, make_store));
  return absl::OkStatus();
}

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
  ScheduleCompletionExpiry();
  return absl::OkStatus();
}

void EngineBase::ScheduleCompletionExpiry() {
  // Every eighth of the time-to-live (at least every 10 ms, at most every 10 s); the timer
  // thread runs it, and it schedules its next run itself until the timer stops.
  const absl::Duration period =
      std::clamp(options_.completion_ttl / 8, absl::Milliseconds(10), absl::Seconds(10));
  timer_.Schedule(absl::Now() + period, [this] {
    store_.DropExpired(absl::Now());
    buffers_.ReleaseRetired();  // freed buffers whose slots are done, if nobody else did
    ScheduleCompletionExpiry();
  });
}

absl::Status EngineBase::CheckTenant(uint32_t tenant) const {
  if (tenant < options_.max_tenants) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("engine: tenant ", tenant,
                                                 " out of range; this engine serves tenants 0..",
                                                 options_.max_tenants - 1));
}

absl::Status EngineBase::CheckPending(uint32_t tenant, absl::Span<const uint64_t> tickets) {
  // Completions owed to WaitFor are counted before their slots become visible and until they
  // are handed out: with none owed, no ticket of this tenant can arrive for a waiter any more.
  if (tickets.empty()) return absl::OkStatus();
  if (store_.owed(tenant) != 0) {
    // Others are owed: name a ticket collected or dropped already (the store remembers its
    // last settlements), instead of waiting out the wait for it.
    const auto settled = store_.FirstSettled(tenant, tickets);
    if (!settled.has_value()) return absl::OkStatus();
    if (settled->how == CompletionStore::Settled::kDropped) {
      return absl::NotFoundError(absl::StrCat(
          "engine: ticket ", settled->ticket, " of tenant ", tenant,
          " was dropped: nobody collected its completion within the completion time-to-live (",
          absl::FormatDuration(store_.ttl()), "); poll sooner after publishing"));
    }
    return absl::NotFoundError(absl::StrCat("engine: ticket ", settled->ticket, " of tenant ",
                                            tenant,
                                            " was collected already (by an earlier Poll, or by "
                                            "the waiting Publish that published it); poll each "
                                            "ticket published without a wait once"));
  }
  return absl::NotFoundError(absl::StrCat(
      "engine: tickets[0] = ", tickets[0], " is not pending for tenant ", tenant,
      " (nothing is owed to it): its completion was collected already, dropped after the ",
      "completion time-to-live (", absl::FormatDuration(store_.ttl()),
      "), or delivered to the stream or waiting Publish that published it; poll each ticket ",
      "published without a wait once"));
}

absl::Status EngineBase::CheckLoader() const {
  if (loader_ != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "engine: no resource root is configured; start the server with --resource_root=DIR");
}

absl::StatusOr<PublishResult> EngineBase::Publish(uint32_t tenant,
                                                  absl::Span<const SlotPayload> slots,
                                                  const PublishOptions& options) {
  MK_RETURN_IF_ERROR(CheckTenant(tenant));
  if (!accepting_.load(std::memory_order_acquire)) {
    return absl::UnavailableError(
        "engine: draining or shut down; no new work is accepted (retry on another instance)");
  }
  if (!tenants_.Enabled(tenant)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "engine: tenant ", tenant, " is disabled; an admin must enable it before it publishes"));
  }
  MK_RETURN_IF_ERROR(ValidatePublish(slots));
  auto result = publisher_.Publish(tenant, slots, options.sink);
  if (result.ok()) OnPublished(slots.size());
  return result;
}

absl::StatusOr<std::vector<Completion>> EngineBase::WaitFor(uint32_t tenant,
                                                            absl::Span<const uint64_t> tickets,
                                                            absl::Time deadline) {
  MK_RETURN_IF_ERROR(CheckTenant(tenant));
  MK_RETURN_IF_ERROR(tickets_.CheckIssued(tenant, tickets));
  MK_RETURN_IF_ERROR(CheckPending(tenant, tickets));
  return store_.Take(tenant, tickets, deadline,
                     [this](absl::FunctionRef<bool()> arrived, absl::Time until) {
                       HelpWhileWaiting(arrived, until);
                     });
}

absl::StatusOr<Engine::WaitId> EngineBase::WaitForAsync(uint32_t tenant,
                                                        absl::Span<const uint64_t> tickets,
                                                        absl::Time deadline,
                                                        CompletionsCallback done) {
  MK_RETURN_IF_ERROR(CheckTenant(tenant));
  MK_RETURN_IF_ERROR(tickets_.CheckIssued(tenant, tickets));
  MK_RETURN_IF_ERROR(CheckPending(tenant, tickets));
  // The timer id is known only after TakeAsync returned; `expiry` lets whichever side finishes
  // second cancel the timer so finished waits leave nothing scheduled.
  struct Expiry {
    std::atomic<uint64_t> timer{0};
    std::atomic<bool> finished{false};
  };
  auto expiry = std::make_shared<Expiry>();
  const uint64_t id = store_.TakeAsync(
      tenant, tickets, [this, expiry, done = std::move(done)](std::vector<Completion> got) {
        expiry->finished.store(true, std::memory_order_seq_cst);
        if (uint64_t t = expiry->timer.load(std::memory_order_seq_cst); t != 0) timer_.Cancel(t);
        done(std::move(got));
      });
  if (expiry->finished.load(std::memory_order_seq_cst)) return id;
  expiry->timer.store(timer_.Schedule(deadline, [this, id] { store_.Expire(id); }),
                      std::memory_order_seq_cst);
  if (expiry->finished.load(std::memory_order_seq_cst)) timer_.Cancel(expiry->timer.load());
  return id;
}

void EngineBase::EndWait(WaitId id) { store_.Expire(id); }

void EngineBase::ReturnCompletions(absl::Span<const Completion> completions) {
  if (!completions.empty()) store_.Return(completions);
}

absl::StatusOr<uint32_t> EngineBase::Cancel(uint32_t tenant, absl::Span<const uint64_t> tickets) {
  MK_RETURN_IF_ERROR(CheckTenant(tenant));
  uint32_t cancelled;
  {
    CompletionBatcher batcher = reaper_.NewBatcher();
    cancelled = reaper_.CancelTickets(tenant, tickets, &batcher);
  }
  // Cancelled parked slots leave the parked list now: their ring slots are reused.
  if (cancelled != 0) scheduler_.ForgetCancelledParked(tenant);
  NotifyProgress();
  return cancelled;
}

absl::Status EngineBase::SetTenantEnabled(uint32_t tenant, bool enabled) {
  MK_RETURN_IF_ERROR(CheckTenant(tenant));
  MK_RETURN_IF_ERROR(tenants_.SetEnabled(tenant, enabled));
  if (enabled) scheduler_.OnTenantEnabled(tenant);
  return absl::OkStatus();
}

absl::Status EngineBase::Telemetry(absl::Span<const uint32_t> window_opcodes,
                                   TelemetrySnapshot* out) {
  const absl::Span<const uint32_t> control = control_->control().words();
  if (!window_opcodes.empty()) {  // windows need every slot's words: the full decode
    return DecodeTelemetry(ring_->words(), control, window_opcodes, out);
  }
  ring_->CountOccupancy(&out->occupancy);
  MK_RETURN_IF_ERROR(DecodeControl(control, &out->control));
  DeriveCounters(out->occupancy, out->control, &out->counters);
  out->windows.clear();
  return absl::OkStatus();
}

absl::Status EngineBase::ReadDebugLog(DebugLogContents* out) {
  return DecodeDebugLog(control_->debug_log(), out);
}

absl::StatusOr<uint32_t> EngineBase::RegisterResource(uint32_t tenant, const std::string& path,
                                                      uint64_t offset, uint64_t length) {
  if (tenant != kSharedResourceOwner) MK_RETURN_IF_ERROR(CheckTenant(tenant));
  MK_RETURN_IF_ERROR(CheckLoader());
  return loader_->Register(tenant, path, offset, length);
}

absl::StatusOr<std::vector<ResourceInfo>> EngineBase::ListResources(uint32_t tenant) {
  if (tenant != kSharedResourceOwner) MK_RETURN_IF_ERROR(CheckTenant(tenant));
  MK_RETURN_IF_ERROR(CheckLoader());
  return loader_->List(tenant);
}

absl::Status EngineBase::EvictResource(uint32_t tenant, uint32_t resource_id) {
  if (tenant != kSharedResourceOwner) MK_RETURN_IF_ERROR(CheckTenant(tenant));
  MK_RETURN_IF_ERROR(CheckLoader());
  return loader_->Evict(tenant, resource_id);
}

bool EngineBase::FinishClaimed(uint32_t index, const protocol::ExecResult& r,
                               ControlCounters& counters) {
  using protocol::SlotStatus;
  uint32_t* w = ring_->slot(index);
  switch (r.status) {
    case SlotStatus::kDone:
    case SlotStatus::kFault: {
      // Read before the outcome makes the slot reapable (this executor owns it until then).
      const uint32_t fence = ring_->meta(index).fence_waiter;
      const uint32_t opcode = w[protocol::kWordOpcode];
      PartitionedRing::WriteOutcome(w, index, r, Actor::kEngine);
      counters.CountOutcome(opcode);
      if (fence != kNoFence && ring_->ReleaseFence(fence)) scheduler_.PushReady(fence);
      return true;
    }
    case SlotStatus::kRequeue:
      PartitionedRing::StoreStatus(w, index, SlotStatus::kRequeue, Actor::kEngine,
                                   std::memory_order_release);
      scheduler_.PushReady(index);
      return false;
    default:
      PartitionedRing::MoveStatus(w, index, SlotStatus::kClaimed, r.status, Actor::kEngine);
      return false;
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
    CompletionBatcher batcher = reaper_.NewBatcher();
    scheduler_.BeginDrain(&batcher);
  }
  if (!started()) {
    return absl::FailedPreconditionError(
        "engine: Drain before Start; nothing executes the accepted slots (Start, or Shutdown)");
  }
  std::unique_lock<std::mutex> lock(drain_mu_);
  bool drained = ledger_.in_flight() == 0;
  while (!drained && absl::Now() < deadline) {
    const auto until = absl::ToChronoTime(std::min(deadline, absl::Now() + absl::Minutes(1)));
    drained = drain_cv_.wait_until(lock, until, [this] { return ledger_.in_flight() == 0; });
  }
  lock.unlock();
  if (!drained) {
    return absl::DeadlineExceededError(
        absl::StrCat("engine: drain deadline passed with ", ledger_.in_flight(),
                     " slots still in flight; call Drain again or Shutdown to fail them"));
  }
  return OutcomeCounters();
}

void EngineBase::FailInFlight() {
  scheduler_.Clear();
  CompletionBatcher batcher = reaper_.NewBatcher();
  reaper_.FailInFlight(&batcher);
}

absl::StatusOr<EngineCounters> EngineBase::Shutdown() {
  std::lock_guard<std::mutex> lock(shutdown_mu_);
  if (shut_down_.load()) return OutcomeCounters();
  accepting_.store(false, std::memory_order_seq_cst);
  absl::Status stopped = started() ? StopExecutor() : absl::OkStatus();
  FailInFlight();
  shut_down_.store(true);
  NotifyProgress();
  MK_RETURN_IF_ERROR(stopped);
  return OutcomeCounters();
}

absl::Status EngineBase::Restart() {
  std::lock_guard<std::mutex> lock(shutdown_mu_);
  if (shut_down_.load()) return absl::FailedPreconditionError("engine: restart after shutdown");
  restarts_.fetch_add(1);  // counted before the in-flight slots fail, so their FAULTs see it
  absl::Status stopped = started() ? StopExecutor() : absl::OkStatus();
  FailInFlight();
  control_->control().Store(ctl::kShutdown, 0);
  PauseExecutor(false);
  absl::Status restarted = stopped.ok() && started() ? StartExecutor() : absl::OkStatus();
  if (restarted.ok() && started()) executor_starts_.fetch_add(1);
  NotifyProgress();
  return stopped.ok() ? restarted : stopped;
}

EngineCounters EngineBase::OutcomeCounters() const {
  EngineCounters c = ledger_.counters();
  c.stored_completions = store_.size();
  c.expired_completions = store_.dropped();
  return c;
}

EngineCounters EngineBase::counters() const {
  EngineCounters c = OutcomeCounters();
  c.parked_workers = ParkedWorkers();
  c.parked_slots = scheduler_.parked_count();
  c.done_count = control_->control().done_count();
  if (loader_ != nullptr) c.io_progress_bytes = loader_->ProgressBytes();
  return c;
}

void EngineBase::Stats(EngineStats* out) const {
  ledger_.Stats(out);
  out->restarts = restarts_.load();
  out->executor_starts = executor_starts_.load();
  if (loader_ != nullptr) loader_->Stats(&out->io);
}

absl::StatusOr<BufferInfo> EngineBase::CreateBuffer(uint32_t tenant, uint64_t bytes) {
  return buffers_.Create(tenant, bytes);
}

absl::Status EngineBase::WriteBuffer(uint32_t tenant, uint32_t handle, uint64_t offset,
                                     absl::Span<const char> bytes) {
  return buffers_.Write(tenant, handle, offset, bytes);
}

absl::Status EngineBase::ReadBuffer(uint32_t tenant, uint32_t handle, uint64_t offset,
                                    absl::Span<char> out) {
  if (!protocol::buffer::IsBufferHandle(handle)) {  // a resource id: its resident bytes
    MK_RETURN_IF_ERROR(CheckTenant(tenant));
    MK_RETURN_IF_ERROR(CheckLoader());
    return loader_->ReadResident(tenant, handle, offset, out);
  }
  return buffers_.Read(tenant, handle, offset, out);
}

absl::Status EngineBase::FreeBuffer(uint32_t tenant, uint32_t handle) {
  return buffers_.Free(tenant, handle);
}

absl::StatusOr<std::vector<BufferInfo>> EngineBase::ListBuffers(uint32_t tenant) {
  return buffers_.List(tenant);
}

}  // namespace mk::engine::host
