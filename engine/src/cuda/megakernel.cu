// The persistent megakernel: launched once per engine lifetime (and once per watchdog restart),
// it serves the submission queue until the doorbell says stop. See kernel_abi.h for the buffers
// and who writes them.
//
// Each block serves one shard; warp 0 polls (PollShard). Per iteration it reads the shard's
// doorbell (one 16-byte load) and, in the same PCIe round trip, the entry at the position it
// expects to claim next (entries are self-validating, kernel_abi.h): a lone request is claimed
// and run one round trip after the host wrote it, without waiting for a doorbell read that
// shows it. While the block serves lone requests, its scout warps (ScoutLoop) probe that entry
// too, each in its own slot of the SM clock, so one probe leaves every ~400 ns instead of one
// per round trip. Otherwise the poller claims up to `workers` entries (with a CAS on a
// shared-memory claim position when the block is the shard's only poller, else on the shard's
// device-memory claim counter), and the block's workers (every thread but the scouts) run one
// entry each: the batch's entries read with warp-coalesced loads (ReadEntries), the shared
// interpreter, and the outcome written as a tagged completion record (no fence: the tags tell
// the host when the record is complete). An idle poller backs off with
// __nanosleep up to max_backoff_ns (cuda_engine.cc says why it is short), so an idle kernel
// reads one doorbell and one entry a few hundred thousand times a second per block.
//
// Resources: LOAD_MISS looks the resource up in the residency table and completes DONE when it
// is resident; otherwise its record says "ask the host" and the host's loader serves the miss
// (reads the file with io_uring, copies it to device memory, resumes the slot). CHECKSUM hashes
// the device-resident bytes with the whole block after the batch's other entries ran.
#include <stdint.h>

#include "cuda/megakernel.h"
#include "cuda/megakernel_entries.cuh"
#include "cuda/ptx_memory.cuh"
#include "offload/kernel_abi.h"

namespace mk::engine::cuda {
namespace {

constexpr uint32_t kMinBackoffNs = 64;
// A block counts as idle (its flag, EngineCounters::parked_workers) after this many polls in a
// row at the longest backoff, about 100 us: between two requests of a busy client it stays
// "working", and the flag's changes are slow enough for the host to observe them.
constexpr uint32_t kIdleAfterPolls = 64;
// Scouts (ScoutLoop) probe on a fixed schedule of the SM clock: scout i of n issues its probes
// at times i * kScoutPeriodCycles / n (mod kScoutPeriodCycles), so the block's probes leave
// evenly spaced without the scouts touching shared memory to take turns. The period (about
// 1.6 us at the H100's 1.98 GHz) is a little longer than a probe's PCIe round trip (~1.2-1.3
// us): four scouts keep one probe leaving every ~400 ns.
constexpr long long kScoutPeriodCycles = 3200;
// Scouts probe only this long (SM cycles, about 100 us) after the block last ran a lone
// request; otherwise they nap, so an idle or batch-only block reads no more than before.
constexpr long long kScoutHotCycles = 200'000;
constexpr uint32_t kScoutNapNs = 4000;
// PollerShared::last_single once thread 0 saw the doorbell's stop (clock64 never gets there).
constexpr unsigned long long kPollersStopped = ~0ull;

// Reads a claim position or PollerShared word that other warps change outside any barrier, as
// an atomic (an add of 0), which racecheck does not count as a hazard. Not protocol::AtomicLoad
// (atomics.h: a 32-bit volatile load and fence for the interpreter's words).
__device__ __forceinline__ unsigned long long AtomicPeek(unsigned long long* p) {
  return atomicAdd(p, 0ull);
}

// What warp 0 and the scouts share (shared memory, atomics only; few: compute-sanitizer's
// racecheck instruments every shared access, and a busy word slows the whole kernel under it).
struct PollerShared {
  // The shard's claim position when the block is its only poller (else the device counter
  // is used): every claim is a compare-and-swap on it.
  unsigned long long next;
  // clock64() when the block last ran a lone request (atomicMax), or kPollersStopped.
  unsigned long long last_single;
};

// Gathers a probed entry into lane 0's `w` (lanes 0-7 each hold one 16-byte chunk: the value
// halves of two tagged words) when every chunk carries `tag`; returns whether it did.
__device__ bool GatherWholeEntry(const uint4& chunk, uint32_t tag, uint32_t* w) {
  constexpr uint32_t kChunks = offload::kEntryWords / 2;
  const uint32_t lane = threadIdx.x & 31;
  const bool whole = __all_sync(~0u, lane >= kChunks || (chunk.y == tag && chunk.w == tag));
  if (!whole) return false;
#pragma unroll
  for (uint32_t i = 0; i < kChunks; ++i) {
    const uint32_t x = __shfl_sync(~0u, chunk.x, i);
    const uint32_t z = __shfl_sync(~0u, chunk.z, i);
    if (lane == 0) {
      w[2 * i] = x;
      w[2 * i + 1] = z;
    }
  }
  return true;
}

// The entry at `position`, one 16-byte chunk per lane 0-7 (one coalesced 128-byte request).
__device__ uint4 ProbeEntry(const offload::KernelParams& k, const uint32_t* shard_sq,
                            uint64_t position) {
  const uint32_t lane = threadIdx.x & 31;
  if (lane >= offload::kEntryWords / 2) return make_uint4(0, 0, 0, 0);
  return LoadVolatile4(EntryAt(k, shard_sq, position) + 4 * lane);
}

// One poll of the block's shard, by warp 0. Three reads are in flight at once: the claim
// position (`counter`: the block's shared word, or the device counter of a shared shard), the
// doorbell (lane 0, one 16-byte acquire load) and, speculatively, the entry at the position the
// poller expects to claim next (ProbeEntry). When that entry's tags all match, it is the last
// of its dispatch, and the doorbell shows at most that one entry, the poller claims it and
// thread 0 runs it from the speculative copy, one PCIe round trip after the host wrote it;
// otherwise it claims up to `limit` entries, read after the doorbell (ReadEntries). Every
// claim is a compare-and-swap on `counter` (the scouts claim from it too). Lane 0 decides and
// writes the block's shared words; `w` (thread 0) receives the speculative entry; `next`
// (lane 0) is the expected claim position, a guess the claim corrects.
struct PollResult {
  uint64_t begin;
  uint32_t count;
  uint32_t stop;
  uint32_t speculative;  // thread 0 holds entry `begin` in `w`
};

__device__ PollResult PollShard(const offload::KernelParams& k, uint32_t shard,
                                const uint32_t* shard_sq, unsigned long long* counter,
                                uint32_t limit, unsigned long long& next, uint32_t* w) {
  const uint32_t lane = threadIdx.x;
  const unsigned long long expected = __shfl_sync(~0u, next, 0);
  unsigned long long c = lane == 0 ? AtomicPeek(counter) : 0;
  const uint4 chunk = ProbeEntry(k, shard_sq, expected);
  ulonglong2 bell = make_ulonglong2(0, 0);
  if (lane == 0) bell = LoadAcquireSystem2(&k.doorbell->shard[shard]);
  const bool whole = GatherWholeEntry(chunk, offload::PositionTag(expected), w);
  PollResult out{0, 0, 0, 0};
  if (lane != 0) return out;  // only lane 0's result is used
  const uint64_t tail = bell.x;
  out.stop = static_cast<uint32_t>(bell.y);
  const uint32_t paused = static_cast<uint32_t>(bell.y >> 32);
  if (out.stop != 0 || paused != 0) return out;
  // The speculative entry: claimed alone, when it ends its dispatch and the doorbell shows no
  // more than it.
  if (whole && (w[offload::kEntryRingIndex] & offload::kEntryLastOfDispatch) != 0 &&
      c == expected && tail <= c + 1) {
    const unsigned long long seen = atomicCAS(counter, c, c + 1);
    if (seen == c) {
      out.begin = c;
      out.count = 1;
      out.speculative = 1;
      next = c + 1;
      return out;
    }
    c = seen;
  }
  while (c < tail) {
    const unsigned long long n =
        min(static_cast<unsigned long long>(tail - c), static_cast<unsigned long long>(limit));
    const unsigned long long seen = atomicCAS(counter, c, c + n);
    if (seen == c) {
      out.begin = c;
      out.count = static_cast<uint32_t>(n);
      next = c + n;
      return out;
    }
    c = seen;
  }
  next = c;  // the position as last seen: the next poll's guess
  return out;
}

// A scout: one of the block's last warps, which only ever claims lone requests. Warp 0 polls
// once per PCIe round trip (~1.2 us) plus its backoff, so a request written just after a poll
// left waits most of a round trip for the next; the scouts keep probes of the next entry
// leaving every ~400 ns instead (kScoutPeriodCycles), each from its own warp so that each probe
// really is in flight while the others are (one warp holding several would need registers a
// 1024-thread block does not have). A scout probes only the entry (no doorbell) and claims it
// when it is whole and the last of its dispatch (a dispatch of one, or the rest of a batch cut
// at the claim limit), then runs it on lane 0 like warp 0's speculative entries; everything
// else is left to warp 0. Scouts probe only while the block ran a lone request in the last
// kScoutHotCycles and nap otherwise, and leave once thread 0 saw the doorbell's stop. Per
// probe a scout reads two shared words (the block's last lone request, the claim position).
__device__ __noinline__ void ScoutLoop(const offload::KernelParams& k, const uint32_t* shard_sq,
                                       uint64_t* shard_cq, unsigned long long* counter,
                                       PollerShared& s, uint32_t scout, uint32_t scouts,
                                       protocol::ExecContext& ctx) {
  const uint32_t lane = threadIdx.x & 31;
  const long long offset = kScoutPeriodCycles * scout / scouts;  // this scout's slot
  long long slot = 0;  // lane 0's: when this scout probes next (0: not scheduled)
  uint32_t w[offload::kEntryWords];
  for (;;) {
    // Lane 0 decides and the whole warp acts on it, so no lane waits long at a shuffle for
    // another (compute-sanitizer's racecheck starved blocks whose scouts did): leave, sleep
    // (a nap while the block is cold, or toward this scout's slot) or probe.
    enum : uint32_t { kProbe, kSleep, kLeave };
    uint32_t action = kProbe;
    uint32_t sleep_ns = 0;
    unsigned long long expected = 0;
    if (lane == 0) {
      const long long now = clock64();
      if (slot == 0) {
        const unsigned long long last = AtomicPeek(&s.last_single);
        if (last == kPollersStopped) {
          action = kLeave;
        } else if (now - static_cast<long long>(last) > kScoutHotCycles) {
          // Signed: another warp may have stamped a time after `now` was read.
          action = kSleep;
          sleep_ns = kScoutNapNs;
        } else {
          slot = now - (now - offset) % kScoutPeriodCycles + kScoutPeriodCycles;
        }
      }
      if (slot != 0 && now < slot) {
        // Slept out in short naps (a nap may be up to twice what is asked); ~2 cycles per ns.
        action = kSleep;
        sleep_ns = static_cast<uint32_t>((slot - now) / 4) + 1;
      } else if (slot != 0) {
        slot = 0;
        expected = AtomicPeek(counter);
      }
    }
    action = __shfl_sync(~0u, action, 0);
    if (action == kLeave) return;
    if (action == kSleep) {
      __nanosleep(__shfl_sync(~0u, sleep_ns, 0));
      continue;
    }
    expected = __shfl_sync(~0u, expected, 0);
    const uint4 chunk = ProbeEntry(k, shard_sq, expected);
    if (GatherWholeEntry(chunk, offload::PositionTag(expected), w) && lane == 0 &&
        (w[offload::kEntryRingIndex] & offload::kEntryLastOfDispatch) != 0 &&
        w[protocol::kWordOpcode] != protocol::opcode::kChecksum &&  // the workers' (whole block)
        atomicCAS(counter, expected, expected + 1) == expected) {
      RunEntry(k, shard_cq, expected, w, ctx);
      atomicMax(&s.last_single, static_cast<unsigned long long>(clock64()));  // after: off the path
    }
    __syncwarp();
  }
}

__global__ void __launch_bounds__(kMaxThreadsPerBlock) Megakernel(offload::KernelParams k) {
  __shared__ PollResult s_poll;
  __shared__ PollerShared s_pollers;
  // CHECKSUM entries of the current batch (thread indices), run by all workers after it.
  __shared__ uint32_t s_checksums[kMaxThreadsPerBlock];
  __shared__ uint32_t s_checksum_count;
  // ChecksumJob has default member initializers, which __shared__ variables cannot have.
  __shared__ alignas(ChecksumJob) unsigned char s_job_storage[sizeof(ChecksumJob)];
  ChecksumJob& s_job = *reinterpret_cast<ChecksumJob*>(s_job_storage);
  protocol::ExecContext ctx;
  ctx.control = k.control;
  ctx.layout = k.layout;
  ctx.debug_log = k.debug_log;
  ctx.debug_log_records = k.debug_log_records;
  const uint32_t shard = blockIdx.x % k.shards;
  const uint32_t* shard_sq =
      k.sq + static_cast<uint64_t>(shard) * (k.sq_mask + 1) * offload::kEntryHalves;
  uint64_t* shard_cq =
      k.cq + static_cast<uint64_t>(shard) * (k.sq_mask + 1) * offload::kCompletionWords;
  // A block that is its shard's only poller keeps the shard's claim position in shared memory:
  // no device-memory atomic on the request path. Blocks sharing a shard claim from its device
  // counter.
  const bool sole_poller = gridDim.x <= k.shards;
  unsigned long long* counter = sole_poller ? &s_pollers.next : k.claim + shard;
  const uint32_t scouts = k.scout_warps;
  const uint32_t workers = blockDim.x - 32 * scouts;
  if (threadIdx.x == 0) {
    s_checksum_count = 0;
    s_pollers.next = k.claim[shard];
    s_pollers.last_single = 0;
  }
  __syncthreads();  // the only barrier of the whole block: the scouts leave for their own loop
  if (threadIdx.x >= workers) {
    ScoutLoop(k, shard_sq, shard_cq, counter, s_pollers, (threadIdx.x - workers) / 32, scouts, ctx);
    return;
  }
  unsigned long long next = k.claim[shard];  // lane 0 of warp 0: see PollShard
  uint32_t backoff = kMinBackoffNs;          // thread 0's
  bool idle = false;                         // thread 0's: the block's idle flag is set
  uint32_t empty_polls = 0;                  // thread 0's: polls at the longest backoff in a row
  unsigned long long single_seen = 0;        // thread 0's: s_pollers.last_single as last seen
  uint32_t w[offload::kEntryWords];          // this thread's entry
  for (;;) {
    if (threadIdx.x < 32) {
      const PollResult poll = PollShard(k, shard, shard_sq, counter, workers, next, w);
      if (threadIdx.x == 0) {
        s_poll = poll;
        if (poll.stop != 0) atomicMax(&s_pollers.last_single, kPollersStopped);
        if (poll.speculative != 0) {
          atomicMax(&s_pollers.last_single, static_cast<unsigned long long>(clock64()));
        }
        // A scout's claim counts as the block's: it stays awake (backoff, idle flag).
        const unsigned long long last_single = AtomicPeek(&s_pollers.last_single);
        if (poll.count != 0 || last_single != single_seen) {
          single_seen = last_single;
          backoff = kMinBackoffNs;
          empty_polls = 0;
          if (idle) {
            idle = false;
            StoreVolatile(&k.block_idle[blockIdx.x], 0);
          }
        }
      }
    }
    WorkersSync(workers);
    const PollResult poll = s_poll;
    if (poll.stop != 0) break;
    if (poll.speculative != 0) {
      if (threadIdx.x == 0 && !RunEntry(k, shard_cq, poll.begin, w, ctx)) {
        s_checksums[s_checksum_count++] = 0;
      }
    } else if (poll.count != 0) {
      if (threadIdx.x - (threadIdx.x & 31) < poll.count) {  // warp-uniform: the warp holds entries
        ReadEntries(k, shard_sq, poll.begin, poll.count, w);
        if (threadIdx.x < poll.count && !RunEntry(k, shard_cq, poll.begin + threadIdx.x, w, ctx)) {
          s_checksums[atomicAdd(&s_checksum_count, 1u)] = threadIdx.x;
        }
      }
    } else if (threadIdx.x == 0) {
      __nanosleep(backoff);
      if (backoff < k.max_backoff_ns) {
        backoff = min(backoff * 2, k.max_backoff_ns);
      } else if (!idle && ++empty_polls == kIdleAfterPolls) {
        idle = true;
        StoreVolatile(&k.block_idle[blockIdx.x], 1);
      }
    }
    WorkersSync(workers);  // the shared words are rewritten by the next iteration's poll
    const uint32_t checksums = s_checksum_count;
    if (checksums != 0) {  // uniform over the workers: read after the barrier, reset below
      for (uint32_t c = 0; c < checksums; ++c) {
        BlockChecksum(k, shard_sq, shard_cq, poll.begin + s_checksums[c], workers, s_job);
      }
      if (threadIdx.x == 0) s_checksum_count = 0;
      WorkersSync(workers);
    }
  }
}

}  // namespace

cudaError_t LaunchMegakernel(const offload::KernelParams& params, int blocks, int threads,
                             cudaStream_t stream) {
  Megakernel<<<blocks, threads, 0, stream>>>(params);
  return cudaGetLastError();
}

cudaError_t MegakernelBlocksPerMultiprocessor(int threads, int* blocks) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks, Megakernel, threads, 0);
}

}  // namespace mk::engine::cuda
