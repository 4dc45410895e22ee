// The contract between the CUDA engine's host side and its persistent kernel: the layouts both
// read and write, compiled by g++ (host) and nvcc (device). No CUDA headers.
//
// Who owns what (all buffers are allocated by DeviceState and live until it is destroyed):
// - Doorbell (mapped host memory, 16 bytes per shard): written by the host dispatcher, read by the
//   kernel's pollers, each with one 16-byte acquire load of its shard's copy (in flight together
//   with a speculative read of the next entry). `sq_tail` is stored with release ordering after
//   the entries it covers (after a store fence when they were written with streaming stores);
//   `stop` and `paused` are plain flags, written into every shard's copy.
// - Submission queues (mapped host memory), one per shard: tagged entries (below) written only
//   by the host dispatcher, read only by the kernel. Entry k of shard s lives at
//   s * sq_capacity + (k & sq_mask); the host never reuses an entry before the slot it named was
//   reaped (capacity >= ring slots, each shard reaped in order by its own reaper thread).
//   Block b serves shard b % shards, so a shard's entries are polled by few blocks and reaped
//   by one host thread; shards exist so completions are reaped by several host threads.
// - Completion queues (mapped host memory), one per shard, entry k paired with SQ entry k: the
//   kernel writes each outcome as tagged 64-bit words (the tag is the low 32 bits of k + 1 in
//   the high half, a status or result word in the low half), each a single-copy-atomic aligned
//   store. The host reaper reads them in order and knows the record is complete when word 0
//   and the `result_count` words after it carry the tag, so no system-scope fence is needed
//   between results and status (one per batch cost about half a round trip:
//   docs/performance.md). The reaper then writes the results and STATUS into the
//   ring slot, where the protocol's state machine and telemetry see them, and reaps it.
// - Ring (the PartitionedRing's memory): the kernel only reads the copies in the SQ entries; it
//   never touches the ring itself.
// - Claim counters (device memory, one per shard): next position to claim. Set by the host
//   only while no kernel runs. Blocks sharing a shard take ranges with a CAS, so each entry runs
//   exactly once; a block that is its shard's only poller (blocks <= shards) reads the counter
//   once at launch and claims from a shared-memory copy (its warp 0 and scouts, with a CAS).
// - Control copy (device memory): the tenant scratch windows and EPOCH the interpreter touches.
//   The host's control buffer keeps the counters the host maintains (DONE_COUNT, fairness,
//   per-opcode runs, EPOCH), which are what telemetry decodes.
// - Residency table (mapped host memory, written only by the host's DeviceResidency under the
//   loader's lock): entry id & table_mask describes resource `id` when its key matches. The
//   host writes address and length, then the key with release; it clears the key before the
//   entry is reused. The kernel reads the key with acquire, then the fields, and (LOAD_MISS)
//   the key again. CHECKSUM slots are pinned by the host from dispatch to reap, so the bytes
//   and entry of the resource they hash cannot be evicted under them.
// - Resident bytes (device memory, the DeviceResidency's arena): written only by copy-engine
//   copies before the entry is published; the kernel reads them through L2 (ld.global.cg), so
//   no stale L1 line of an evicted resource survives into its room's next tenant.
// - Leaf scratch (device memory): max_leaves hashes per block for CHECKSUM's tree hash.
// - Block idle flags (mapped host memory): block b writes 1 when its poller has polled at the
//   longest backoff with nothing to claim for a while (megakernel.cu, kIdleAfterPolls) and 0
//   when it claims again (EngineCounters::parked_workers).
#ifndef MK_ENGINE_SRC_OFFLOAD_KERNEL_ABI_H_
#define MK_ENGINE_SRC_OFFLOAD_KERNEL_ABI_H_

#include <stdint.h>

#include "mk/engine/protocol.h"

namespace mk::engine::offload {

inline constexpr uint32_t kMaxShards = 8;

// One shard's doorbell: a poller reads all three words with one 16-byte load (one PCIe
// request per poll), so `stop` and `paused` are repeated in every shard's copy.
struct alignas(16) ShardDoorbell {
  uint64_t sq_tail;  // entries published so far
  uint32_t stop;     // non-zero: every block leaves its loop and the kernel exits
  uint32_t paused;   // non-zero: blocks claim nothing (SetExecutionPausedForTesting)
};
struct alignas(64) Doorbell {
  ShardDoorbell shard[kMaxShards];
};
static_assert(sizeof(Doorbell) == size_t{16} * kMaxShards, "the shards' doorbells, packed");

// Queue entries and completion records carry the tag of their position in every 64-bit word.
MK_HOST_DEVICE constexpr uint32_t PositionTag(uint64_t position) {
  return static_cast<uint32_t>(position) + 1;  // never 0, so zeroed memory never matches
}
MK_HOST_DEVICE constexpr uint64_t TaggedWord(uint32_t tag, uint32_t value) {
  return (uint64_t{tag} << 32) | value;
}

// A submission-queue entry: 16 tagged 64-bit words (128 bytes), like a completion record.
// Word i is TaggedWord(PositionTag(position), v_i): v_0 is the ring slot index, v_1..v_15 the
// slot's words 1..15 (opcode, tenant, priority, arguments) as the dispatcher claimed it. The
// tags make every entry self-validating, so a poller may read the entry at its claim position in
// the same PCIe round trip as the doorbell (megakernel.cu's poll) and run it
// when every tag matches, before any doorbell read shows it: each aligned 8-byte word is single-
// copy atomic, so a word with the right tag carries the right value, whatever order the words
// reach the device in. The host writes kHeldEntryTag instead while execution is paused, so a
// paused kernel never starts an entry speculatively (it reads held entries after the doorbell,
// once unpaused, which needs no tags).
inline constexpr uint32_t kEntryWords = protocol::kSlotWords;  // values per entry
inline constexpr uint32_t kEntryHalves = 2 * kEntryWords;      // 32-bit halves per entry
inline constexpr uint32_t kEntryRingIndex = 0;
inline constexpr uint32_t kHeldEntryTag = 0;
// Set in v_0 (above the ring index; rings have at most 2^26 slots) on the last entry of each
// dispatch. A poller claims an entry speculatively only when it carries this bit: the first
// entry of a batch still being written waits for the doorbell, so the batch is claimed whole
// instead of as one entry and then the rest.
inline constexpr uint32_t kEntryLastOfDispatch = 1u << 31;

// A completion record: 16 tagged 64-bit words (128 bytes). Word 0's low half is
// STATUS | result_count << 8; words 1..result_count hold the result words.
inline constexpr uint32_t kCompletionWords = 16;

// Each block's last warps are scouts (megakernel.cu, ScoutLoop): they only claim lone
// requests, so a block's batches are at most its other threads, the workers.
inline constexpr uint32_t kScoutWarps = 4;
MK_HOST_DEVICE constexpr uint32_t ScoutWarps(uint32_t threads_per_block) {
  return threads_per_block >= 32 * (kScoutWarps + 1) ? kScoutWarps : 0;
}

// Residency table entry (32 bytes, see above).
struct alignas(32) ResidencyEntry {
  uint64_t key;      // 0: empty; else ResidencyKey(tenant, id); written last, with release
  uint64_t address;  // device address of the resident bytes
  uint64_t length;   // bytes
  uint64_t reserved;
};
// The owner of shared resources (mk::engine::kSharedResourceOwner): every tenant may use them.
inline constexpr uint32_t kSharedOwner = 0xFFFFFFFFu;
// A tenant's key has its id + 1 in the high word; a shared resource's key is its id alone (ids
// start at 1): never 0, and never another owner's key.
MK_HOST_DEVICE constexpr uint64_t ResidencyKey(uint32_t tenant, uint32_t id) {
  return (uint64_t{tenant} + 1) << 32 | id;
}
static_assert(ResidencyKey(kSharedOwner, 7) == 7 && ResidencyKey(0, 7) == (uint64_t{1} << 32 | 7));

// A LOAD_MISS whose resource the kernel did not find resident completes with this status: the
// host's loader serves it (load, coalesce, requeue, or fault) instead of the kernel.
// Deviation from docs/protocol.md ("Io queue and LOAD_MISS", step 2): the kernel does not take the
// io slot itself (a compare-and-swap on host memory is not atomic across PCIe, see cuda_engine.h);
// the host half of the engine takes it, moves the ring slot to WAIT_IO and publishes the request,
// with the same claim-once, OK/ERROR and resume semantics as the CPU engine.
inline constexpr uint32_t kAskHostStatus = static_cast<uint32_t>(protocol::SlotStatus::kWaitIo);

struct ResidencyParams {
  const ResidencyEntry* table = nullptr;  // null: no resource loading (every LOAD_MISS asks)
  uint32_t table_mask = 0;
  uint64_t* leaf_scratch = nullptr;  // max_leaves per block
  uint32_t max_leaves = 0;
};

struct KernelParams {
  const Doorbell* doorbell;
  const uint32_t* sq;  // 32-bit halves; shard s starts at entry s * (sq_mask + 1)
  uint64_t* cq;        // likewise
  uint64_t sq_mask;
  uint32_t shards;
  // One counter per shard, in the type CUDA's atomicCAS takes.
  unsigned long long* claim;  // NOLINT(google-runtime-int)
  uint32_t* block_idle;
  uint32_t* control;
  protocol::control::Layout layout;
  uint32_t* debug_log;
  uint32_t debug_log_records;
  uint32_t max_backoff_ns;  // longest __nanosleep of an idle poller
  uint32_t scout_warps;     // the block's last warps that are scouts (0 or ScoutWarps(blockDim))
  ResidencyParams residency;
};

}  // namespace mk::engine::offload

#endif  // MK_ENGINE_SRC_OFFLOAD_KERNEL_ABI_H_
