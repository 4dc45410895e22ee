// The persistent megakernel: launched once per engine lifetime (and once per watchdog restart),
// it serves the submission queue until the doorbell says stop. See kernel_abi.h for the buffers
// and who writes them.
//
// Each block has one poller (thread 0) and serves one shard. Per iteration the poller reads the
// doorbell (one PCIe round trip), claims up to blockDim entries from the shard's device-memory
// claim counter with a CAS, and the
// block's threads run one entry each: a coalesced read of the 64-byte entry, the shared
// interpreter, the result words written back into the ring slot; then one system-scope fence
// for the batch and the STATUS words. An idle poller backs off with __nanosleep up to max_backoff_ns, so an idle kernel
// reads host memory a few hundred thousand times a second at most, from a handful of pollers.
#include <stdint.h>

#include "engine/src/cuda/kernel_abi.h"
#include "engine/src/cuda/megakernel.h"
#include "engine/src/cuda/ptx_memory.cuh"
#include "mk/engine/interpreter.h"
#include "mk/engine/opcode_registry.h"

namespace mk::engine::cuda {
namespace {

constexpr uint32_t kMinBackoffNs = 64;

// Runs SQ entry `position`: reads it, executes it and writes its result words into the ring
// slot. Returns the slot's terminal STATUS and ring index, which the block publishes after one
// system-scope fence for the whole batch (PublishStatuses).
struct Ran {
  uint32_t index;
  uint32_t status;
};
__device__ Ran RunEntry(const KernelParams& k, const uint32_t* shard_sq, uint64_t position,
                        protocol::ExecContext& ctx) {
  const uint32_t* entry = shard_sq + (position & k.sq_mask) * kEntryWords;
  uint32_t w[kEntryWords];
#pragma unroll
  for (uint32_t c = 0; c < kEntryWords / 4; ++c) {
    const uint4 v = LoadVolatile4(entry + 4 * c);
    w[4 * c] = v.x;
    w[4 * c + 1] = v.y;
    w[4 * c + 2] = v.z;
    w[4 * c + 3] = v.w;
  }
  const uint32_t index = w[kEntryRingIndex];
  const protocol::ExecResult r = protocol::Execute<protocol::ProductOpcodes>(w, index, ctx);
  uint32_t out[protocol::kArgWords];
#pragma unroll
  for (uint32_t i = 0; i < protocol::kArgWords; ++i) out[i] = i < r.result_count ? r.results[i] : 0;
  uint32_t* slot = k.ring + static_cast<uint64_t>(index) * protocol::kSlotWords;
#pragma unroll
  for (uint32_t c = 0; c < protocol::kArgWords / 4; ++c) {
    StoreVolatile4(slot + protocol::kWordArg0 + 4 * c, out + 4 * c);
  }
  return Ran{index, static_cast<uint32_t>(r.status)};
}

__global__ void __launch_bounds__(kMaxThreadsPerBlock) Megakernel(KernelParams k) {
  __shared__ uint64_t s_begin;
  __shared__ uint32_t s_count;
  __shared__ uint32_t s_stop;
  __shared__ uint32_t s_ring_index[kMaxThreadsPerBlock];  // the batch's slots and outcomes
  __shared__ uint32_t s_status[kMaxThreadsPerBlock];
  protocol::ExecContext ctx;
  ctx.control = k.control;
  ctx.layout = k.layout;
  ctx.debug_log = k.debug_log;
  ctx.debug_log_records = k.debug_log_records;
  const uint32_t shard = blockIdx.x % k.shards;
  const uint32_t* shard_sq = k.sq + static_cast<uint64_t>(shard) * (k.sq_mask + 1) * kEntryWords;
  unsigned long long* claim = k.claim + shard;
  uint32_t backoff = kMinBackoffNs;  // thread 0's
  bool idle = false;                 // thread 0's: the block's idle flag is set
  for (;;) {
    if (threadIdx.x == 0) {
      const uint32_t stop = LoadVolatile(&k.doorbell->stop);
      const uint32_t paused = LoadVolatile(&k.doorbell->paused);
      const uint64_t tail = LoadAcquireSystem(&k.doorbell->sq_tail[shard]);
      uint64_t begin = 0;
      uint32_t count = 0;
      if (stop == 0 && paused == 0) {
        unsigned long long c = *reinterpret_cast<volatile unsigned long long*>(claim);
        while (c < tail) {
          const unsigned long long n = min(static_cast<unsigned long long>(tail - c),
                                           static_cast<unsigned long long>(blockDim.x));
          const unsigned long long seen = atomicCAS(claim, c, c + n);
          if (seen == c) {
            begin = c;
            count = static_cast<uint32_t>(n);
            break;
          }
          c = seen;
        }
      }
      s_begin = begin;
      s_count = count;
      s_stop = stop;
      if (count != 0) {
        backoff = kMinBackoffNs;
        if (idle) {
          idle = false;
          StoreVolatile(&k.block_idle[blockIdx.x], 0);
        }
      }
    }
    __syncthreads();
    if (s_stop != 0) break;
    const uint32_t count = s_count;
    if (count != 0) {
      if (threadIdx.x < count) {
        const Ran ran = RunEntry(k, shard_sq, s_begin + threadIdx.x, ctx);
        s_ring_index[threadIdx.x] = ran.index;
        s_status[threadIdx.x] = ran.status;
      }
      // One system-scope fence per batch instead of one per slot (a fence waits for the PCIe
      // writes before it, and fences from every warp serialize): the barrier orders every
      // thread's result words before warp 0's fence, and warp 0 then writes every STATUS. Each
      // lane's fence + STATUS store is a release that covers the whole batch's results.
      __syncthreads();
      if (threadIdx.x < 32) {
        FenceAcqRelSystem();
        for (uint32_t i = threadIdx.x; i < count; i += 32) {
          StoreVolatile(k.ring + static_cast<uint64_t>(s_ring_index[i]) * protocol::kSlotWords +
                            protocol::kWordStatus,
                        s_status[i]);
        }
      }
    } else if (threadIdx.x == 0) {
      __nanosleep(backoff);
      if (backoff < k.max_backoff_ns) {
        backoff = min(backoff * 2, k.max_backoff_ns);
      } else if (!idle) {
        idle = true;
        StoreVolatile(&k.block_idle[blockIdx.x], 1);
      }
    }
    __syncthreads();  // the shared words are rewritten by the next iteration's poll
  }
}

}  // namespace

cudaError_t LaunchMegakernel(const KernelParams& params, int blocks, int threads,
                             cudaStream_t stream) {
  Megakernel<<<blocks, threads, 0, stream>>>(params);
  return cudaGetLastError();
}

cudaError_t MegakernelBlocksPerMultiprocessor(int threads, int* blocks) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks, Megakernel, threads, 0);
}

}  // namespace mk::engine::cuda
