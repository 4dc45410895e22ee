// Word atomics usable from host and device code, for the interpreter and the ring protocol.
//
// On the host these are std::atomic_ref operations (C++20); in device code they are CUDA's
// atomic intrinsics and volatile accesses with device-scope fences: on the CUDA engine the words
// they touch (tenant scratch, EPOCH) live in device memory and only the GPU reads them, so a
// system-scope fence (~12 us on the lent H200, docs/performance.md) would buy nothing. Whatever
// the kernel writes for the host to read is ordered by the kernel itself. The branch is on
// __CUDA_ARCH__ (which compilation pass this is), not on whether CUDA is available: the
// availability `#if` lives only in the engine factory.
#ifndef MK_ENGINE_ATOMICS_H_
#define MK_ENGINE_ATOMICS_H_

#include <stdint.h>

#include "mk/engine/protocol.h"

#if !defined(__CUDA_ARCH__)
#include <atomic>
#endif

namespace mk::protocol {

MK_HOST_DEVICE inline uint32_t AtomicLoad(const uint32_t* word) {
#if defined(__CUDA_ARCH__)
  const uint32_t v = *reinterpret_cast<const volatile uint32_t*>(word);
  __threadfence();
  return v;
#else
  return std::atomic_ref<uint32_t>(*const_cast<uint32_t*>(word)).load(std::memory_order_acquire);
#endif
}

MK_HOST_DEVICE inline void AtomicStore(uint32_t* word, uint32_t value) {
#if defined(__CUDA_ARCH__)
  __threadfence();
  *reinterpret_cast<volatile uint32_t*>(word) = value;
#else
  std::atomic_ref<uint32_t>(*word).store(value, std::memory_order_release);
#endif
}

MK_HOST_DEVICE inline uint32_t AtomicFetchAdd(uint32_t* word, uint32_t value) {
#if defined(__CUDA_ARCH__)
  return atomicAdd(word, value);
#else
  return std::atomic_ref<uint32_t>(*word).fetch_add(value, std::memory_order_acq_rel);
#endif
}

// Returns the value observed before the operation (== expected when it succeeded).
MK_HOST_DEVICE inline uint32_t AtomicCompareSwap(uint32_t* word, uint32_t expected,
                                                 uint32_t desired) {
#if defined(__CUDA_ARCH__)
  return atomicCAS(word, expected, desired);
#else
  std::atomic_ref<uint32_t>(*word).compare_exchange_strong(expected, desired,
                                                           std::memory_order_acq_rel);
  return expected;
#endif
}

}  // namespace mk::protocol

#endif  // MK_ENGINE_ATOMICS_H_
