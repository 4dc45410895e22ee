// The CPU engine: host worker threads execute the shared interpreter over the same ring,
// control buffer and protocol the CUDA engine uses. It is the embedded default when no GPU is
// present.
//
// Threads: `workers` executor threads (each claims a batch from the highest-priority non-empty
// partition, runs it, and reaps it), plus whatever caller threads publish, wait and cancel.
// Idle workers spin for a short while and then park on a futex (std::atomic::wait); publishers
// wake them only when some are parked, so an idle engine costs no CPU and a busy one pays no
// system call per publish.
//
// Deferred slots (disabled tenants, fences waiting for their batch) are kept by the shared
// ClaimScheduler; workers take its ready list before claiming new ranges.
#ifndef MK_ENGINE_SRC_CPU_CPU_ENGINE_H_
#define MK_ENGINE_SRC_CPU_CPU_ENGINE_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/src/host/claim_scheduler.h"
#include "engine/src/host/resource_loader.h"
#include "engine/src/host/ring_host.h"
#include "mk/engine/engine.h"

namespace mk::engine::cpu {

class CpuEngine final : public Engine {
 public:
  static absl::StatusOr<std::unique_ptr<CpuEngine>> Create(const EngineOptions& options);
  ~CpuEngine() override;

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
  absl::StatusOr<uint32_t> RegisterResource(uint32_t tenant, const std::string& path,
                                            uint64_t offset, uint64_t length) override;
  absl::StatusOr<std::vector<ResourceInfo>> ListResources(uint32_t tenant) override;
  absl::Status EvictResource(uint32_t tenant, uint32_t resource_id) override;
  absl::Status Restart() override;
  void SetExecutionPausedForTesting(bool paused) override;
  EngineCounters counters() const override;
  void Stats(EngineStats* out) const override;
  EngineInfo info() const override;

 private:
  struct WorkerState;

  CpuEngine(std::unique_ptr<host::RingHost> host, std::unique_ptr<host::ResourceLoader> loader,
            const EngineOptions& options);
  absl::Status CheckLoader() const;

  void WorkerLoop();
  void StartWorkers();
  // Stops and joins the workers (they finish the batch in hand).
  void StopWorkers();
  void ProcessClaim(const host::ClaimRange& range, WorkerState& ws);
  bool ProcessReady(WorkerState& ws);
  // Claims and runs `index` if it is claimable and its tenant enabled (else parks it).
  bool TryRun(uint32_t index, WorkerState& ws);
  void RunClaimed(uint32_t index, WorkerState& ws);
  void IdleWait(bool was_spinning);
  // Wakes parked workers (all of them, or one for a single batch of work).
  void WakeWorkers(bool all = true);
  // Lets Drain re-check its condition after outcomes were counted.
  void NotifyProgress();
  absl::Status CheckTenant(uint32_t tenant) const;
  bool TenantEnabled(uint32_t tenant) const;

  std::unique_ptr<host::RingHost> host_;
  // LOAD_MISS / CHECKSUM; null without a resource root. Declared after host_: destroyed first.
  std::unique_ptr<host::ResourceLoader> loader_;
  const EngineOptions options_;
  const uint32_t worker_count_;
  std::vector<std::thread> workers_;
  std::atomic<bool> started_{false};
  std::atomic<bool> stop_{false};
  std::atomic<bool> accepting_{true};
  std::atomic<bool> shut_down_{false};

  host::ClaimScheduler scheduler_;  // uses host_; declared after it
  std::atomic<bool> draining_flag_{false};
  std::atomic<bool> paused_{false};        // SetExecutionPausedForTesting
  std::atomic<uint64_t> restarts_{0};

  std::atomic<uint32_t> work_epoch_{0};
  std::atomic<uint32_t> sleepers_{0};
  std::atomic<uint32_t> spinners_{0};  // workers polling for work before they park

  std::mutex drain_mu_;
  std::condition_variable drain_cv_;  // signalled after outcomes are counted while draining
  std::mutex shutdown_mu_;
};

}  // namespace mk::engine::cpu

#endif  // MK_ENGINE_SRC_CPU_CPU_ENGINE_H_
