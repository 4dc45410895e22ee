// HostThreadKernel: host threads playing the persistent kernel's part over SubmissionQueues,
// for the cuda-emulated engine: the CUDA engine's dispatcher and reapers, unchanged, on
// machines without a GPU and under ThreadSanitizer (which cannot see into a GPU).
//
// Thread b ("block" b) serves shard b % shards, as a kernel block does. Each poll reads the
// shard's doorbell (tail with acquire ordering, then the flags); unless stopped or paused it
// claims up to `claim_limit` entries below the tail with a compare-and-swap on the shard's
// claim counter (blocks sharing a shard run each entry once), checks every word's tag (a
// mismatch aborts: the dispatcher reused an entry in use), runs each through the shared
// interpreter, and writes its tagged completion record in the worst order a GPU's unfenced
// stores may arrive in: the status word first (release), the result words after it (relaxed),
// so the reaper's wait for each result word's tag is exercised. Like the GPU it keeps its own
// copy of the control words (scratch windows, EPOCH) and writes PRINTF records into the
// engine's debug log. A LOAD_MISS always asks the host (this kernel has no residency table, as
// if nothing were resident on the GPU); CHECKSUM hashes through the `checksum` hook (the
// loader's host-resident copy). An idle block spins briefly, then sleeps up to `max_backoff`,
// and marks itself idle after 64 polls at the longest backoff, as a GPU block does.
//
// What it does not exercise: the GPU's speculative reads of an entry before the doorbell shows
// it (tagged words make those safe; here every entry is read after the doorbell), the scout
// warps, the residency table, and the dispatcher's streaming stores and store fence as PCIe
// orders them (ThreadSanitizer does not model non-temporal stores or _mm_sfence; it sees the
// doorbell's release store, which is what orders them for a host thread).
//
// Thread safety: as KernelPort. Lifetime: the destructor stops and joins the threads.
#ifndef MK_ENGINE_SRC_OFFLOAD_HOST_THREAD_KERNEL_H_
#define MK_ENGINE_SRC_OFFLOAD_HOST_THREAD_KERNEL_H_

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mk/engine/interpreter.h"
#include "offload/kernel_port.h"

namespace mk::engine::offload {

struct HostKernelConfig {
  QueueShape shape;
  uint32_t claim_limit = 1024;  // entries a block claims at once (a GPU block's workers)
  absl::Duration max_backoff = absl::Microseconds(100);  // an idle block's longest sleep
};

class HostThreadKernel final : public KernelPort {
 public:
  // `layout` sizes the kernel's own control words (zeroed, as a GPU's device copy is);
  // `debug_log` is the engine's; `checksum` runs CHECKSUM (its load_miss is not used; a null
  // checksum faults RESOURCE_NOT_FOUND). The buffers must outlive the kernel.
  static absl::StatusOr<std::unique_ptr<HostThreadKernel>> Create(
      const HostKernelConfig& config, const protocol::control::Layout& layout,
      absl::Span<uint32_t> debug_log, uint32_t debug_log_records, protocol::IoHook checksum);
  ~HostThreadKernel() override;
  // The tenant buffers the blocks resolve handles through (host memory: this kernel runs on
  // the host). Call before Launch.
  void SetBuffers(const protocol::buffer::Descriptor* buffers, uint32_t count) {
    context_.buffers = buffers;
    context_.buffer_count = count;
  }

  absl::Status Launch(const uint64_t* first_positions) override;
  absl::Status WaitStopped(absl::Time deadline) override;
  absl::Status KernelState() override;

 private:
  HostThreadKernel(const HostKernelConfig& config, std::unique_ptr<SubmissionQueues> queues,
                   const protocol::control::Layout& layout, absl::Span<uint32_t> debug_log,
                   uint32_t debug_log_records, protocol::IoHook checksum);
  void BlockLoop(uint32_t block);
  // Claims up to claim_limit entries of `shard` below `tail`; false when there are none.
  bool Claim(uint32_t shard, uint64_t tail, uint64_t* begin, uint64_t* end);
  void RunEntry(uint32_t shard, uint64_t position, protocol::ExecContext& ctx);
  // Aborts (with a log line) unless every word of the entry carries the position's tag or the
  // held tag.
  static void CheckEntryTags(uint32_t shard, uint64_t position, const uint64_t* entry);
  void WriteCompletion(uint32_t shard, uint64_t position, const protocol::ExecResult& r);
  // Joins the threads of a launch that has ended (mu_ not held).
  void JoinExited();

  const HostKernelConfig config_;
  std::vector<uint32_t> control_;  // the kernel's control words; only its threads touch them
  protocol::ExecContext context_;  // each block works on a copy
  std::array<std::atomic<uint64_t>, kMaxShards> claim_{};  // next position to claim, per shard

  std::mutex mu_;
  std::condition_variable exited_;   // a block thread returned
  uint32_t running_ = 0;             // block threads not yet returned; guarded by mu_
  std::vector<std::thread> blocks_;  // guarded by mu_ (started by Launch, joined after exit)
};

}  // namespace mk::engine::offload

#endif  // MK_ENGINE_SRC_OFFLOAD_HOST_THREAD_KERNEL_H_
