// Cache-line prefetches for the host's ring, queue and meta loops. A line another core wrote
// last and this one will write (a ring slot claimed or finished, a slot's meta) is fetched with
// write intent: a plain read prefetch brings it shared, and the store or compare-and-swap that
// follows pays a second transfer to own it. GCC lowers __builtin_prefetch(p, 1) to PREFETCHW
// only when the build targets it (-mprfchw), which the portable build does not, so it is spelled
// out here (x86-64 since Broadwell; elsewhere a read prefetch).
#ifndef MK_ENGINE_SRC_HOST_PREFETCH_H_
#define MK_ENGINE_SRC_HOST_PREFETCH_H_

namespace mk::engine::host {

inline void PrefetchForRead(const void* p) { __builtin_prefetch(p, /*rw=*/0); }

inline void PrefetchForWrite(const void* p) {
#if defined(__x86_64__)
  asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, /*rw=*/1);
#endif
}

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_PREFETCH_H_
