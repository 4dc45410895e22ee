// XXH64 written once for host and device code (no CUDA headers), so the megakernel can compute
// CHECKSUM's tree hash (docs/protocol.md, "Opcodes") over device-resident bytes. The host side of
// the engines uses libxxhash; tests/unit/engine/cuda/xxh64_test.cc checks that both agree.
//
// `Source` supplies the bytes: U8(at), U32(at) and U64(at) read little-endian values at byte
// offset `at`, so the kernel can read device memory with its own cache policy.
#ifndef MK_ENGINE_SRC_CUDA_XXH64_H_
#define MK_ENGINE_SRC_CUDA_XXH64_H_

#include <stdint.h>

#include "mk/engine/protocol.h"

namespace mk::engine::xxh64 {

inline constexpr uint64_t kPrime1 = 11400714785074694791ULL;
inline constexpr uint64_t kPrime2 = 14029467366897019727ULL;
inline constexpr uint64_t kPrime3 = 1609587929392839161ULL;
inline constexpr uint64_t kPrime4 = 9650029242287828579ULL;
inline constexpr uint64_t kPrime5 = 2870177450012600261ULL;

MK_HOST_DEVICE inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

MK_HOST_DEVICE inline uint64_t Round(uint64_t acc, uint64_t input) {
  acc += input * kPrime2;
  return Rotl(acc, 31) * kPrime1;
}

MK_HOST_DEVICE inline uint64_t MergeRound(uint64_t acc, uint64_t value) {
  acc ^= Round(0, value);
  return acc * kPrime1 + kPrime4;
}

template <typename Source>
MK_HOST_DEVICE uint64_t Hash(const Source& src, uint64_t length, uint64_t seed) {
  uint64_t at = 0;
  uint64_t h;
  if (length >= 32) {
    uint64_t v1 = seed + kPrime1 + kPrime2, v2 = seed + kPrime2, v3 = seed, v4 = seed - kPrime1;
    const uint64_t stripes_end = length - length % 32;
    for (; at < stripes_end; at += 32) {
      v1 = Round(v1, src.U64(at));
      v2 = Round(v2, src.U64(at + 8));
      v3 = Round(v3, src.U64(at + 16));
      v4 = Round(v4, src.U64(at + 24));
    }
    h = Rotl(v1, 1) + Rotl(v2, 7) + Rotl(v3, 12) + Rotl(v4, 18);
    h = MergeRound(h, v1);
    h = MergeRound(h, v2);
    h = MergeRound(h, v3);
    h = MergeRound(h, v4);
  } else {
    h = seed + kPrime5;
  }
  h += length;
  for (; at + 8 <= length; at += 8) {
    h ^= Round(0, src.U64(at));
    h = Rotl(h, 27) * kPrime1 + kPrime4;
  }
  if (at + 4 <= length) {
    h ^= uint64_t{src.U32(at)} * kPrime1;
    h = Rotl(h, 23) * kPrime2 + kPrime3;
    at += 4;
  }
  for (; at < length; ++at) {
    h ^= src.U8(at) * kPrime5;
    h = Rotl(h, 11) * kPrime1;
  }
  h ^= h >> 33;
  h *= kPrime2;
  h ^= h >> 29;
  h *= kPrime3;
  h ^= h >> 32;
  return h;
}

// Bytes at any alignment, assembled one byte at a time (little-endian on every target).
struct ByteSource {
  const uint8_t* p;
  MK_HOST_DEVICE uint8_t U8(uint64_t at) const { return p[at]; }
  MK_HOST_DEVICE uint32_t U32(uint64_t at) const {
    return uint32_t{p[at]} | uint32_t{p[at + 1]} << 8 | uint32_t{p[at + 2]} << 16 |
           uint32_t{p[at + 3]} << 24;
  }
  MK_HOST_DEVICE uint64_t U64(uint64_t at) const {
    return uint64_t{U32(at)} | uint64_t{U32(at + 4)} << 32;
  }
};

}  // namespace mk::engine::xxh64

#endif  // MK_ENGINE_SRC_CUDA_XXH64_H_
