// How the persistent kernel runs one submission-queue entry (megakernel.cu finds them): the
// entry's words read from mapped host memory (one thread alone, or a warp's entries with
// coalesced loads), the shared interpreter, LOAD_MISS against the residency table, the tagged
// completion record, and CHECKSUM hashed by the block's workers. Only megakernel.cu includes
// this; kernel_abi.h says who owns the buffers.
#ifndef MK_ENGINE_SRC_CUDA_MEGAKERNEL_ENTRIES_CUH_
#define MK_ENGINE_SRC_CUDA_MEGAKERNEL_ENTRIES_CUH_

#include <stdint.h>

#include "cuda/ptx_memory.cuh"
#include "cuda/xxh64.h"
#include "mk/engine/interpreter.h"
#include "mk/engine/opcode_registry.h"
#include "offload/kernel_abi.h"

namespace mk::engine::cuda {

constexpr uint64_t kLeafBytes = 64 * 1024;  // CHECKSUM's tree-hash leaf (docs/protocol.md)

// Bytes read through L2 only (ld.global.cg): resident bytes are written by copy engines and
// rooms are reused after eviction, so no SM may serve them from a stale L1 line.
struct L2Source {
  const uint8_t* p;
  bool aligned;  // p is 8-byte aligned: whole-word loads (every U64 / U32 offset is aligned)
  __device__ uint8_t U8(uint64_t at) const { return __ldcg(p + at); }
  __device__ uint32_t U32(uint64_t at) const {
    if (aligned) return __ldcg(reinterpret_cast<const unsigned int*>(p + at));
    return uint32_t{U8(at)} | uint32_t{U8(at + 1)} << 8 | uint32_t{U8(at + 2)} << 16 |
           uint32_t{U8(at + 3)} << 24;
  }
  __device__ uint64_t U64(uint64_t at) const {
    if (aligned) return __ldcg(reinterpret_cast<const unsigned long long*>(p + at));
    return uint64_t{U32(at)} | uint64_t{U32(at + 4)} << 32;
  }
};

struct Resident {
  bool found = false;
  uint64_t address = 0;
  uint64_t length = 0;
};

// Resource `id` of `tenant`, or a shared resource `id` (every tenant's to use), in the residency
// table (mapped host memory, kernel_abi.h): the key, the fields, and the key again, so an entry
// replaced meanwhile reads as absent.
__device__ inline Resident LookupResident(const offload::ResidencyParams& r, uint32_t tenant,
                                          uint32_t id) {
  Resident out;
  if (r.table == nullptr) return out;
  const offload::ResidencyEntry* e = r.table + (id & r.table_mask);
  const uint64_t key = LoadAcquireSystem(&e->key);
  if (key != offload::ResidencyKey(tenant, id) &&
      key != offload::ResidencyKey(offload::kSharedOwner, id)) {
    return out;
  }
  out.address = LoadAcquireSystem(&e->address);
  out.length = LoadAcquireSystem(&e->length);
  out.found = LoadAcquireSystem(&e->key) == key;
  return out;
}

// LOAD_MISS: DONE with the length when the resource is resident, else the host serves it.
__device__ inline protocol::ExecResult LoadMiss(const offload::KernelParams& k, uint32_t tenant,
                                                const uint32_t* args) {
  const Resident r = LookupResident(k.residency, tenant, args[0]);
  protocol::ExecResult out;
  if (!r.found) {
    out.status = static_cast<protocol::SlotStatus>(offload::kAskHostStatus);
    return out;
  }
  out = protocol::Done(2);
  out.results[0] = static_cast<uint32_t>(r.length);
  out.results[1] = static_cast<uint32_t>(r.length >> 32);
  return out;
}

// Writes SQ entry `position`'s outcome as a tagged completion record (results first, then
// STATUS; their order does not matter to the reader).
__device__ inline void WriteCompletion(const offload::KernelParams& k, uint64_t* shard_cq,
                                       uint64_t position, const protocol::ExecResult& r) {
  uint64_t* record = shard_cq + (position & k.sq_mask) * offload::kCompletionWords;
  const uint32_t tag = offload::PositionTag(position);
  const uint32_t count =
      r.result_count < protocol::kArgWords ? r.result_count : protocol::kArgWords;
  for (uint32_t i = 0; i < count; ++i) {
    StoreVolatile64(record + 1 + i, offload::TaggedWord(tag, r.results[i]));
  }
  StoreVolatile64(record, offload::TaggedWord(tag, static_cast<uint32_t>(r.status) | count << 8));
}

// The address of entry `position` of a shard's submission queue (32-bit halves).
__device__ inline const uint32_t* EntryAt(const offload::KernelParams& k, const uint32_t* shard_sq,
                                          uint64_t position) {
  return shard_sq + (position & k.sq_mask) * offload::kEntryHalves;
}

// One thread reads a whole entry (eight 16-byte loads: the value halves of its tagged words).
__device__ inline void ReadEntry(const offload::KernelParams& k, const uint32_t* shard_sq,
                                 uint64_t position, uint32_t* w) {
  const uint32_t* entry = EntryAt(k, shard_sq, position);
#pragma unroll
  for (uint32_t c = 0; c < offload::kEntryWords / 2; ++c) {
    const uint4 v = LoadVolatile4(entry + 4 * c);
    w[2 * c] = v.x;
    w[2 * c + 1] = v.z;
  }
}

// Reads the batch's entries [begin, begin + count) so that thread t < count holds entry
// begin + t in `w`. One thread loading its own entry would issue eight 16-byte requests, which
// the GPU serves one after another over PCIe (the bench's serial-slot floor); instead lane l of
// each warp loads chunks l, l + 32, ..., l + 224 of its warp's 32 entries (eight 16-byte chunks,
// two tagged words each, per entry), so every warp-wide load is one coalesced request (a single
// entry costs one 128-byte read), and shuffles hand each thread its entry's value halves. Tags
// are not checked: the doorbell read (acquire) that covered these entries came first. Called by
// every thread of each warp that holds an entry of the batch (the shuffles need the whole warp).
__device__ inline void ReadEntries(const offload::KernelParams& k, const uint32_t* shard_sq,
                                   uint64_t begin, uint32_t count, uint32_t* w) {
  static_assert(offload::kEntryWords == 16, "eight 16-byte chunks per entry");
  constexpr uint32_t kChunks = offload::kEntryWords / 2;  // per entry
  constexpr uint32_t kRounds = kChunks;  // warp-wide loads: 32 entries x kChunks / 32 lanes
  const uint32_t lane = threadIdx.x & 31;
  const uint32_t warp_first = threadIdx.x - lane;  // batch index of the warp's first entry
  uint2 values[kRounds];                           // round r: the value halves of this lane's chunk
#pragma unroll
  for (uint32_t r = 0; r < kRounds; ++r) {
    const uint32_t entry = warp_first + (32 * r + lane) / kChunks;  // its entry's batch index
    values[r] = make_uint2(0, 0);
    if (entry < count) {
      const uint4 v = LoadVolatile4(EntryAt(k, shard_sq, begin + entry) + 4 * (lane % kChunks));
      values[r] = make_uint2(v.x, v.z);
    }
  }
  // This lane's entry was loaded in round lane / 4, chunk c by lane 8 * (lane % 4) + c.
#pragma unroll
  for (uint32_t r = 0; r < kRounds; ++r) {
#pragma unroll
    for (uint32_t c = 0; c < kChunks; ++c) {
      const int source = static_cast<int>(kChunks * (lane % 4) + c);
      const uint32_t x = __shfl_sync(~0u, values[r].x, source);
      const uint32_t y = __shfl_sync(~0u, values[r].y, source);
      if (lane / 4 == r) {
        w[2 * c] = x;
        w[2 * c + 1] = y;
      }
    }
  }
}

// Runs SQ entry `position` of a shard, already read into `w`: executes it and writes its
// completion record. Returns false for a CHECKSUM, which the whole block runs afterwards
// (BlockChecksum).
__device__ inline bool RunEntry(const offload::KernelParams& k, uint64_t* shard_cq,
                                uint64_t position, const uint32_t* w, protocol::ExecContext& ctx) {
  const uint32_t op = w[protocol::kWordOpcode];
  const uint32_t tenant = w[protocol::kWordTenant];
  const bool tenant_ok = tenant < ctx.layout.max_tenants;
  if (op == protocol::opcode::kChecksum && tenant_ok) return false;
  const protocol::ExecResult r =
      op == protocol::opcode::kLoadMiss && tenant_ok
          ? LoadMiss(k, tenant, w + protocol::kWordArg0)
          : protocol::Execute<protocol::ProductOpcodes>(
                w, w[offload::kEntryRingIndex] & ~offload::kEntryLastOfDispatch, ctx);
  // Effects become visible before the completion that announces them: a PRINTF's debug-log
  // record is in host memory (system scope); scratch writes are in device memory, read only by
  // later slots on this GPU (device scope, much cheaper).
  if (op == protocol::opcode::kPrintf) {
    FenceAcqRelSystem();
  } else if (op != protocol::opcode::kNop && op != protocol::opcode::kLoadU32 &&
             op != protocol::opcode::kDfaStep && op != protocol::opcode::kLoadMiss) {
    __threadfence();
  }
  WriteCompletion(k, shard_cq, position, r);
  return true;
}

// The barrier of the block's workers (threads [0, workers)): the scouts, the block's last
// warps, run outside it. `workers` is a multiple of 32.
__device__ __forceinline__ void WorkersSync(uint32_t workers) {
  asm volatile("bar.sync 1, %0;" ::"r"(workers) : "memory");
}

// What thread 0 resolved for the block's CHECKSUM in progress.
struct ChecksumJob {
  const uint8_t* bytes;
  uint64_t length;
  uint32_t leaves;
  bool fault;
  protocol::ExecResult outcome;  // the fault, when `fault`
};

// CHECKSUM (docs/protocol.md, "Opcodes") of SQ entry `position`, run by the block's `workers`
// threads: thread 0 resolves the resource, the threads hash one 64 KiB leaf each (strided),
// thread 0 hashes the leaves into the root and writes the completion. Uniform control flow.
__device__ inline void BlockChecksum(const offload::KernelParams& k, const uint32_t* shard_sq,
                                     uint64_t* shard_cq, uint64_t position, uint32_t workers,
                                     ChecksumJob& job) {
  if (threadIdx.x == 0) {
    uint32_t w[offload::kEntryWords];
    ReadEntry(k, shard_sq, position, w);
    const uint32_t* args = w + protocol::kWordArg0;
    const uint32_t id = args[0];
    const uint64_t offset = uint64_t{args[1]} | uint64_t{args[2]} << 32;
    uint64_t length = args[3];
    const Resident r = LookupResident(k.residency, w[protocol::kWordTenant], id);
    job.fault = true;
    if (!r.found) {
      job.outcome = protocol::Fault(protocol::FaultCode::kResourceNotFound, id);
    } else {
      if (length == 0 && offset <= r.length) length = r.length - offset;  // 0: to the end
      if (offset > r.length || length > r.length - offset) {
        job.outcome = protocol::Fault(protocol::FaultCode::kOutOfBounds, id);
      } else {
        job.fault = false;
        job.bytes = reinterpret_cast<const uint8_t*>(r.address) + offset;
        job.length = length;
        job.leaves = static_cast<uint32_t>((length + kLeafBytes - 1) / kLeafBytes);
      }
    }
  }
  WorkersSync(workers);
  uint64_t* leaves = k.residency.leaf_scratch + uint64_t{blockIdx.x} * k.residency.max_leaves;
  if (!job.fault) {
    const bool aligned = (reinterpret_cast<uintptr_t>(job.bytes) & 7) == 0;
    for (uint32_t i = threadIdx.x; i < job.leaves; i += workers) {
      const uint64_t at = uint64_t{i} * kLeafBytes;
      const uint64_t n = job.length - at < kLeafBytes ? job.length - at : kLeafBytes;
      leaves[i] = xxh64::Hash(L2Source{job.bytes + at, aligned}, n, 0);
    }
  }
  WorkersSync(workers);
  if (threadIdx.x == 0) {
    protocol::ExecResult out = job.outcome;
    if (!job.fault) {
      const uint64_t root = xxh64::Hash(L2Source{reinterpret_cast<const uint8_t*>(leaves), true},
                                        uint64_t{job.leaves} * 8, 0);
      out = protocol::Done(3);
      out.results[0] = static_cast<uint32_t>(root);
      out.results[1] = static_cast<uint32_t>(root >> 32);
      out.results[2] = job.leaves;
    }
    WriteCompletion(k, shard_cq, position, out);
  }
  WorkersSync(workers);  // `job` is rewritten by the next CHECKSUM
}

}  // namespace mk::engine::cuda

#endif  // MK_ENGINE_SRC_CUDA_MEGAKERNEL_ENTRIES_CUH_
