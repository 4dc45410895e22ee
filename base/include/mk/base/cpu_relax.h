// CpuRelax: the pause hint for a thread spinning on a word another thread will write (x86-64's
// PAUSE; nothing elsewhere). It lets the sibling hyperthread run and avoids the memory-order
// flush when the spin ends. Every busy-wait loop in the project calls it between polls.
#ifndef MK_BASE_CPU_RELAX_H_
#define MK_BASE_CPU_RELAX_H_

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace mk::base {

inline void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

}  // namespace mk::base

#endif  // MK_BASE_CPU_RELAX_H_
