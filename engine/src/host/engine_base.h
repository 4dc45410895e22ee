// EngineBase: everything an engine does that does not depend on who executes the slots, shared
// by the CPU engine (host worker threads) and the offload engines (a persistent GPU kernel, or
// host threads emulating it): argument checks, publish, waits, cancellation, tenants, telemetry,
// the debug log, resources, drain, and the teardown / restart sequence. An executor implements
// the hooks at the bottom. docs/design.md follows a slot through these parts.
//
// Ownership: owns every part of the host side, built in this order and destroyed in reverse:
// the control buffers and the ring (memory), the tenant gate, the ticket book, the outcome
// ledger, the completion store and its deadline timer, the reaper, the publisher, the claim
// scheduler, and the optional resource loader (destroyed first: it resumes slots in the ring).
// Thread safety: as Engine (every method from any thread). Teardown (Shutdown, Restart) is
// serialized by `shutdown_mu_`; the executor is stopped before in-flight slots are failed, so
// nothing executes a slot while it is being failed.
#ifndef MK_ENGINE_SRC_HOST_ENGINE_BASE_H_
#define MK_ENGINE_SRC_HOST_ENGINE_BASE_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/time/time.h"
#include "host/buffer_table.h"
#include "host/claim_scheduler.h"
#include "host/completion_store.h"
#include "host/control_buffers.h"
#include "host/deadline_timer.h"
#include "host/outcome_ledger.h"
#include "host/partitioned_ring.h"
#include "host/resource_loader.h"
#include "host/slot_publisher.h"
#include "host/slot_reaper.h"
#include "host/tenant_gate.h"
#include "host/tenant_shares.h"
#include "host/ticket_book.h"
#include "mk/engine/engine.h"

namespace mk::engine::testing {
class EnginePeer;
}  // namespace mk::engine::testing

namespace mk::engine::host {

// The most slots an executor claims at once (EngineOptions::claim_batch; a CUDA block's
// threads).
inline constexpr uint32_t kMaxClaimBatch = 1024;

// The memory an engine is built on, allocated (and its options validated) before the engine
// exists, so a Create can fail with a status.
struct EngineMemory {
  // INVALID_ARGUMENT for ring, tenant, debug-log or claim_batch options out of range;
  // RESOURCE_EXHAUSTED without the memory.
  static absl::StatusOr<EngineMemory> Allocate(const EngineOptions& options);
  std::unique_ptr<ControlBuffers> control;
  std::unique_ptr<PartitionedRing> ring;
};

class EngineBase : public Engine {
 public:
  ~EngineBase() override = default;

  absl::Status Start() override;
  absl::StatusOr<PublishResult> Publish(uint32_t tenant, absl::Span<const SlotPayload> slots,
                                        const PublishOptions& options) override;
  absl::StatusOr<std::vector<Completion>> WaitFor(uint32_t tenant,
                                                  absl::Span<const uint64_t> tickets,
                                                  absl::Time deadline) override;
  absl::StatusOr<WaitId> WaitForAsync(uint32_t tenant, absl::Span<const uint64_t> tickets,
                                      absl::Time deadline, CompletionsCallback done) override;
  void EndWait(WaitId id) override;
  void ReturnCompletions(absl::Span<const Completion> completions) override;
  absl::StatusOr<uint32_t> Cancel(uint32_t tenant, absl::Span<const uint64_t> tickets) override;
  absl::Status SetTenantEnabled(uint32_t tenant, bool enabled) override;
  absl::Status Telemetry(absl::Span<const uint32_t> window_opcodes,
                         TelemetrySnapshot* out) override;
  absl::Status ReadDebugLog(DebugLogContents* out) override;
  absl::StatusOr<EngineCounters> Drain(absl::Time deadline) override;
  absl::StatusOr<EngineCounters> Shutdown() override;
  absl::Status Restart() override;
  absl::StatusOr<uint32_t> RegisterResource(uint32_t tenant, const std::string& path,
                                            uint64_t offset, uint64_t length) override;
  absl::StatusOr<std::vector<ResourceInfo>> ListResources(uint32_t tenant) override;
  absl::Status EvictResource(uint32_t tenant, uint32_t resource_id) override;
  absl::StatusOr<BufferInfo> CreateBuffer(uint32_t tenant, uint64_t bytes) override;
  absl::Status WriteBuffer(uint32_t tenant, uint32_t handle, uint64_t offset,
                           absl::Span<const char> bytes) override;
  absl::Status ReadBuffer(uint32_t tenant, uint32_t handle, uint64_t offset,
                          absl::Span<char> out) override;
  absl::Status FreeBuffer(uint32_t tenant, uint32_t handle) override;
  absl::StatusOr<std::vector<BufferInfo>> ListBuffers(uint32_t tenant) override;
  EngineCounters counters() const override;
  void Stats(EngineStats* out) const override;

 protected:
  // Call ShutdownOnDestroy() from the derived destructor: the executor hooks are gone once
  // ~EngineBase runs.
  EngineBase(EngineMemory memory, const EngineOptions& options);
  void ShutdownOnDestroy();
  // Drops uncollected completions past their time-to-live, periodically, on the timer thread.
  void ScheduleCompletionExpiry();
  // With a resource root: creates the loader (LOAD_MISS / CHECKSUM) over this engine's ring.
  // `make_store` places resident copies (default: host memory). Call once, from Create.
  absl::Status CreateLoader(const ResourceLoader::StoreFactory& make_store = nullptr);

  // Executor hooks. StartExecutor runs at Start and after a restart's teardown; StopExecutor
  // must return only when nothing executes or claims any more (Shutdown, Restart).
  virtual absl::Status StartExecutor() = 0;
  virtual absl::Status StopExecutor() = 0;
  // Slots were published (`count` of them): make the executor see them.
  virtual void OnPublished(size_t count) = 0;
  // The scheduler's ready list gained slots (fence released, tenant enabled).
  virtual void OnReady() = 0;
  // Executors asleep for lack of work (EngineCounters::parked_workers).
  virtual uint32_t ParkedWorkers() const = 0;
  // Runs on a WaitFor caller's thread while it spins (CompletionStore::SpinHelper): an executor
  // may deliver the caller's completions from there, without a handoff between threads.
  virtual void HelpWhileWaiting(absl::FunctionRef<bool()> /*arrived*/, absl::Time /*until*/) {}
  // Test hooks (mk/engine/testing/engine_peer.h). PauseExecutor: executors claim nothing until
  // unpaused or restarted. SimulateUnresponsiveExecutor: the executor no longer hears stop
  // requests, as a hung GPU kernel would not; engines whose executors always stop ignore it.
  virtual void PauseExecutor(bool paused) = 0;
  virtual void SimulateUnresponsiveExecutor(bool /*unresponsive*/) {}
  // HoldIoReads: the loader's reads wait until released (ResourceLoader::HoldReads).
  void HoldIoReads(bool hold) {
    if (loader_ != nullptr) loader_->HoldReads(hold);
  }

  // Records a CLAIMED slot's outcome, the same for every executor. DONE / FAULT: written by the
  // ring's one outcome writer, counted, and a fence waiting on the slot released. REQUEUE: the
  // slot goes back to the ready list. WAIT_IO: the loader parked it already (it may even be
  // resumed by now), so only a slot still CLAIMED moves. Returns true when the slot is terminal
  // (the caller reaps it).
  bool FinishClaimed(uint32_t index, const protocol::ExecResult& r, ControlCounters& counters);

  // Lets Drain re-check its condition after outcomes were counted.
  void NotifyProgress();
  bool started() const { return started_.load(std::memory_order_acquire); }

  const EngineOptions options_;
  // The host side's parts, in construction order (see the top of this file).
  const std::unique_ptr<ControlBuffers> control_;
  const std::unique_ptr<PartitionedRing> ring_;
  TenantGate tenants_;
  TicketBook tickets_;
  OutcomeLedger ledger_;
  CompletionStore store_;
  // Each tenant's slots per partition: the publisher takes, the ring's tail gives back.
  TenantShares shares_;
  // Tenant buffers, in host memory on every engine for now (the CUDA engine's device arena
  // is the next step: docs/buffers.md). Before timer_, whose ticks release retired buffers:
  // the timer stops before they go away.
  HostBufferMemory buffer_memory_;
  BufferTable buffers_;
  DeadlineTimer timer_;  // after store_ and buffers_: stopped before they go away
  SlotReaper reaper_;
  SlotPublisher publisher_;
  ClaimScheduler scheduler_;
  // LOAD_MISS / CHECKSUM; null without a resource root. Last: destroyed first.
  std::unique_ptr<ResourceLoader> loader_;

 private:
  friend class testing::EnginePeer;

  absl::Status CheckTenant(uint32_t tenant) const;
  absl::Status CheckLoader() const;
  // NOT_FOUND when `tenant` is owed no completion at all, so none of `tickets` can arrive
  // (collected, expired, or delivered to a sink): a waiter gets that at once, not after its
  // whole wait. With completions owed, waiters wait as before.
  absl::Status CheckPending(uint32_t tenant, absl::Span<const uint64_t> tickets);
  // The ledger's outcome counts and the stored completions: what Drain and Shutdown return.
  // Unlike counters() it asks nothing of the executor, so it is safe under any engine lock and
  // after the executor is gone.
  EngineCounters OutcomeCounters() const;
  // Fails every slot not yet terminal (the executor is stopped) and forgets deferred slots.
  void FailInFlight();

  std::atomic<bool> started_{false};
  std::atomic<bool> accepting_{true};
  std::atomic<bool> shut_down_{false};
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> restarts_{0};
  std::atomic<uint64_t> executor_starts_{0};  // successful StartExecutor calls
  std::mutex drain_mu_;
  std::condition_variable drain_cv_;  // signalled after outcomes are counted while draining
  std::mutex shutdown_mu_;
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_ENGINE_BASE_H_
