// Page-granular host memory: buffers an executor may register with a device (cudaHostRegister
// pins whole pages, so such a buffer must not share a page with another allocation).
#ifndef MK_BASE_PAGE_MEMORY_H_
#define MK_BASE_PAGE_MEMORY_H_

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace mk::base {

inline constexpr size_t kPageBytes = 4096;

inline size_t PageRoundUp(size_t bytes) {
  return (bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
}

// Zeroed, page-aligned memory of PageRoundUp(bytes); nullptr when out of memory. Release it
// with std::free, or own it with a PagePtr.
inline void* AllocatePages(size_t bytes) {
  const size_t rounded = PageRoundUp(bytes);
  void* memory = std::aligned_alloc(kPageBytes, rounded);
  if (memory != nullptr) std::memset(memory, 0, rounded);
  return memory;
}

// Owns memory from AllocatePages: PagePtr<uint32_t[]>(static_cast<uint32_t*>(AllocatePages(n))).
struct PageFree {
  void operator()(void* memory) const { std::free(memory); }
};
template <typename T>
using PagePtr = std::unique_ptr<T, PageFree>;

}  // namespace mk::base

#endif  // MK_BASE_PAGE_MEMORY_H_
