// The contract between the CUDA engine's host side and its persistent kernel: the layouts both
// read and write, compiled by g++ (host) and nvcc (device). No CUDA headers.
//
// Who owns what (all buffers are allocated by DeviceState and live until it is destroyed):
// - Doorbell (mapped host memory, one line): written by the host dispatcher, read by the
//   kernel's poller threads. `sq_tail` is stored with release ordering after the entries it
//   covers; `stop` and `paused` are plain flags.
// - Submission queues (mapped host memory), one per shard: entries written only
//   by the host dispatcher, read only by the kernel. Entry k of shard s lives at
//   s * sq_capacity + (k & sq_mask); the host never reuses an entry before the slot it named was
//   reaped (capacity >= ring slots, each shard reaped in order by its own reaper thread).
//   Block b serves shard b % shards, so a shard's entries are polled by few blocks and reaped
//   by one host thread; shards exist so completions are reaped by several host threads.
// - Ring (the RingHost's memory, registered and mapped): the kernel writes the result words of
//   each slot it ran, a system-scope fence, then STATUS (DONE or FAULT). The host reaper reads
//   STATUS (acquire) and then the words.
// - Claim counters (device memory, one per shard): next position to claim; blocks take ranges
//   with a CAS, so each entry runs exactly once. Set by the host only while no kernel runs.
// - Control copy (device memory): the tenant scratch windows and EPOCH the interpreter touches.
//   The host's control buffer keeps the counters the host maintains (DONE_COUNT, fairness,
//   per-opcode runs, EPOCH), which are what telemetry decodes.
// - Block idle flags (mapped host memory): block b writes 1 when its poller reached the longest
//   backoff with nothing to claim and 0 when it claims again (EngineCounters::parked_workers).
#ifndef MK_ENGINE_SRC_CUDA_KERNEL_ABI_H_
#define MK_ENGINE_SRC_CUDA_KERNEL_ABI_H_

#include <stdint.h>

#include "mk/engine/protocol.h"

namespace mk::engine::cuda {

inline constexpr uint32_t kMaxShards = 4;

struct alignas(64) Doorbell {
  uint64_t sq_tail[kMaxShards];  // entries published so far, per shard
  uint32_t stop;     // non-zero: every block leaves its loop and the kernel exits
  uint32_t paused;   // non-zero: blocks claim nothing (SetExecutionPausedForTesting)
  uint32_t reserved[6];
};
static_assert(sizeof(Doorbell) == 64, "the doorbell is one cache line");

// A submission-queue entry: word 0 holds the ring slot index, words 1..15 the slot's words
// 1..15 (opcode, tenant, priority, arguments) as the dispatcher claimed it.
inline constexpr uint32_t kEntryWords = protocol::kSlotWords;
inline constexpr uint32_t kEntryRingIndex = 0;

struct KernelParams {
  const Doorbell* doorbell;
  const uint32_t* sq;  // shard s starts at entry s * (sq_mask + 1)
  uint64_t sq_mask;
  uint32_t shards;
  uint32_t* ring;
  unsigned long long* claim;  // one counter per shard
  uint32_t* block_idle;
  uint32_t* control;
  protocol::control::Layout layout;
  uint32_t* debug_log;
  uint32_t debug_log_records;
  uint32_t max_backoff_ns;  // longest __nanosleep of an idle poller
};

}  // namespace mk::engine::cuda

#endif  // MK_ENGINE_SRC_CUDA_KERNEL_ABI_H_
