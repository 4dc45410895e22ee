// Device-side accesses to memory the host also reads or writes (mapped host memory), spelled
// in PTX so their memory-model strength is explicit: volatile (relaxed, system scope) and
// acquire at system scope. Only included by .cu files in this folder.
#ifndef MK_ENGINE_SRC_CUDA_PTX_MEMORY_CUH_
#define MK_ENGINE_SRC_CUDA_PTX_MEMORY_CUH_

#include <stdint.h>

namespace mk::engine::cuda {

__device__ __forceinline__ uint64_t LoadAcquireSystem(const uint64_t* p) {
  uint64_t v;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

// Both 8-byte words of a 16-byte-aligned pair with one acquire load (one PCIe request for host
// memory); each word is single-copy atomic.
__device__ __forceinline__ ulonglong2 LoadAcquireSystem2(const void* p) {
  ulonglong2 v;
  asm volatile("ld.acquire.sys.global.v2.u64 {%0, %1}, [%2];"
               : "=l"(v.x), "=l"(v.y)
               : "l"(p)
               : "memory");
  return v;
}

__device__ __forceinline__ uint32_t LoadVolatile(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.volatile.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ uint4 LoadVolatile4(const uint32_t* p) {
  uint4 v;
  asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p)
               : "memory");
  return v;
}

__device__ __forceinline__ void StoreVolatile(uint32_t* p, uint32_t v) {
  asm volatile("st.volatile.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ void StoreVolatile64(uint64_t* p, uint64_t v) {
  asm volatile("st.volatile.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

// Orders this thread's earlier memory accesses (and, through a preceding barrier, its block's)
// before its later ones for every observer in the system, host included. An acquire-release
// fence is all a release pattern needs; __threadfence_system() is a sequentially consistent one.
__device__ __forceinline__ void FenceAcqRelSystem() {
  asm volatile("fence.acq_rel.sys;" ::: "memory");
}

}  // namespace mk::engine::cuda

#endif  // MK_ENGINE_SRC_CUDA_PTX_MEMORY_CUH_
