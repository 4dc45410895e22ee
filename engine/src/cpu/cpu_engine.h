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
#include <memory>
#include <thread>
#include <vector>

#include "host/engine_base.h"
#include "host/wake_signal.h"

namespace mk::engine::cpu {

class CpuEngine final : public host::EngineBase {
 public:
  static absl::StatusOr<std::unique_ptr<CpuEngine>> Create(const EngineOptions& options);
  ~CpuEngine() override;

  EngineInfo info() const override;

 private:
  struct WorkerState;

  CpuEngine(host::EngineMemory memory, const EngineOptions& options);

  absl::Status StartExecutor() override;
  // Stops and joins the workers (they finish the batch in hand).
  absl::Status StopExecutor() override;
  // One claim batch needs one worker: waking every parked worker for it is a thundering herd.
  void OnPublished(size_t count) override { WakeWorkers(/*all=*/count > options_.claim_batch); }
  void OnReady() override { WakeWorkers(); }
  uint32_t ParkedWorkers() const override { return wake_.sleepers(); }
  void PauseExecutor(bool paused) override;

  void WorkerLoop();
  void ProcessClaim(const host::ClaimRange& range, WorkerState& ws);
  bool ProcessReady(WorkerState& ws);
  // Claims and runs `index` if it is claimable and its tenant enabled (else parks it).
  bool TryRun(uint32_t index, WorkerState& ws);
  void RunClaimed(uint32_t index, WorkerState& ws);
  void IdleWait(bool was_spinning);
  // Wakes parked workers (all of them, or one for a single batch of work).
  void WakeWorkers(bool all = true);

  const uint32_t worker_count_;
  std::vector<std::thread> workers_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_{false};  // PauseExecutor (tests)
  // Workers that claim nothing now (paused, or returned from WorkerLoop); PauseExecutor(true)
  // waits until it equals the worker count, so a claim pass already under way cannot take a
  // slot published after the pause. Reset by StartExecutor.
  std::atomic<uint32_t> quiescent_workers_{0};

  host::WakeSignal wake_;              // parked workers sleep here
  std::atomic<uint32_t> spinners_{0};  // workers polling for work before they park
};

}  // namespace mk::engine::cpu

#endif  // MK_ENGINE_SRC_CPU_CPU_ENGINE_H_
