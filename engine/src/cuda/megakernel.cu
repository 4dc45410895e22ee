// The persistent megakernel: launched once per engine lifetime (and once per watchdog restart),
// it serves the submission queue until the doorbell says stop. See kernel_abi.h for the buffers
// and who writes them.
//
// Each block has one poller (thread 0) and serves one shard. Per iteration the poller reads the
// doorbell (one PCIe round trip), claims up to blockDim entries from the shard's device-memory
// claim counter with a CAS, and the
// block's threads run one entry each: a coalesced read of the 64-byte entry, the shared
// interpreter, and the outcome written as a tagged completion record (no fence: the tags tell
// the host when the record is complete). An idle poller backs off with __nanosleep up to max_backoff_ns, so an idle kernel
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

// Runs SQ entry `position` of a shard: reads it, executes it and writes its completion record
// (tagged words: results first, then STATUS; their order does not matter to the reader).
__device__ void RunEntry(const KernelParams& k, const uint32_t* shard_sq, uint64_t* shard_cq,
                         uint64_t position, protocol::ExecContext& ctx) {
  const uint64_t at = position & k.sq_mask;
  const uint32_t* entry = shard_sq + at * kEntryWords;
  uint32_t w[kEntryWords];
#pragma unroll
  for (uint32_t c = 0; c < kEntryWords / 4; ++c) {
    const uint4 v = LoadVolatile4(entry + 4 * c);
    w[4 * c] = v.x;
    w[4 * c + 1] = v.y;
    w[4 * c + 2] = v.z;
    w[4 * c + 3] = v.w;
  }
  const uint32_t op = w[protocol::kWordOpcode];
  const protocol::ExecResult r = protocol::Execute<protocol::ProductOpcodes>(w, w[kEntryRingIndex], ctx);
  // Effects become visible before the completion that announces them: a PRINTF's debug-log
  // record is in host memory (system scope); scratch writes are in device memory, read only by
  // later slots on this GPU (device scope, much cheaper).
  if (op == protocol::opcode::kPrintf) {
    FenceAcqRelSystem();
  } else if (op != protocol::opcode::kNop && op != protocol::opcode::kLoadU32 &&
             op != protocol::opcode::kDfaStep) {
    __threadfence();
  }
  uint64_t* record = shard_cq + at * kCompletionWords;
  const uint32_t tag = CompletionTag(position);
  const uint32_t count = r.result_count < protocol::kArgWords ? r.result_count : protocol::kArgWords;
  for (uint32_t i = 0; i < count; ++i) StoreVolatile64(record + 1 + i, TaggedWord(tag, r.results[i]));
  StoreVolatile64(record, TaggedWord(tag, static_cast<uint32_t>(r.status) | count << 8));
}

__global__ void __launch_bounds__(kMaxThreadsPerBlock) Megakernel(KernelParams k) {
  __shared__ uint64_t s_begin;
  __shared__ uint32_t s_count;
  __shared__ uint32_t s_stop;
  protocol::ExecContext ctx;
  ctx.control = k.control;
  ctx.layout = k.layout;
  ctx.debug_log = k.debug_log;
  ctx.debug_log_records = k.debug_log_records;
  const uint32_t shard = blockIdx.x % k.shards;
  const uint32_t* shard_sq = k.sq + static_cast<uint64_t>(shard) * (k.sq_mask + 1) * kEntryWords;
  uint64_t* shard_cq = k.cq + static_cast<uint64_t>(shard) * (k.sq_mask + 1) * kCompletionWords;
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
      if (threadIdx.x < count) RunEntry(k, shard_sq, shard_cq, s_begin + threadIdx.x, ctx);
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
