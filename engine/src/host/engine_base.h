// EngineBase: everything an engine does that does not depend on who executes the slots, shared
// by the CPU engine (host worker threads) and the CUDA engine (a persistent kernel): argument
// checks, publish, waits, cancellation, tenants, telemetry, the debug log, resources, drain,
// and the teardown / restart sequence. An executor implements the hooks at the bottom.
//
// Ownership: owns the RingHost (ring, control buffer, tickets, completions), the optional
// ResourceLoader and the ClaimScheduler. Thread safety: as Engine (every method from any thread).
// Teardown (Shutdown, Restart) is serialized by `shutdown_mu_`; the executor is stopped before
// in-flight slots are failed, so nothing executes a slot while it is being failed.
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
#include "host/claim_scheduler.h"
#include "host/resource_loader.h"
#include "host/ring_host.h"
#include "mk/engine/engine.h"

namespace mk::engine::host {

class EngineBase : public Engine {
 public:
  ~EngineBase() override = default;

  absl::Status Start() override;
  absl::StatusOr<PublishResult> Publish(uint32_t tenant, absl::Span<const SlotPayload> slots,
                                        const PublishOptions& options) override;
  absl::StatusOr<std::vector<Completion>> WaitFor(uint32_t tenant,
                                                  absl::Span<const uint64_t> tickets,
                                                  absl::Time deadline) override;
  absl::Status WaitForAsync(uint32_t tenant, absl::Span<const uint64_t> tickets,
                            absl::Time deadline, CompletionsCallback done) override;
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
  EngineCounters counters() const override;
  void Stats(EngineStats* out) const override;

 protected:
  // `loader` may be null (no resource root). Call ShutdownOnDestroy() from the derived
  // destructor: the executor hooks are gone once ~EngineBase runs.
  EngineBase(std::unique_ptr<RingHost> host, std::unique_ptr<ResourceLoader> loader,
             const EngineOptions& options);
  void ShutdownOnDestroy();

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

  // Writes a CLAIMED slot's outcome, the same for every executor. DONE / FAULT: the results,
  // then STATUS (release); counted; a fence waiting on the slot is released. REQUEUE: the slot
  // goes back to the ready list. WAIT_IO: the loader parked it already (it may even be resumed
  // by now), so only a slot still CLAIMED moves. Returns true when the slot is terminal (the
  // caller reaps it).
  bool FinishClaimed(uint32_t index, const protocol::ExecResult& r, ControlCounters& counters);

  // Lets Drain re-check its condition after outcomes were counted.
  void NotifyProgress();
  bool started() const { return started_.load(std::memory_order_acquire); }

  std::unique_ptr<RingHost> host_;
  // LOAD_MISS / CHECKSUM; null without a resource root. Declared after host_: destroyed first.
  std::unique_ptr<ResourceLoader> loader_;
  // What resource calls answer (FAILED_PRECONDITION) when loader_ is null.
  std::string no_loader_reason_ =
      "engine: no resource root is configured; start the server with --resource_root=DIR";
  const EngineOptions options_;
  ClaimScheduler scheduler_;  // uses host_; declared after it

 private:
  absl::Status CheckTenant(uint32_t tenant) const;
  absl::Status CheckLoader() const;
  bool TenantEnabled(uint32_t tenant) const;

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
