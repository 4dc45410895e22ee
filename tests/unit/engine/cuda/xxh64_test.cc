// The portable XXH64 the megakernel uses for CHECKSUM agrees with libxxhash (the host engines'
// hash) at every length class: empty, the byte/word tails, the 32-byte stripes, 64 KiB leaves,
// and at unaligned starts.
#include "cuda/xxh64.h"

#include <xxhash.h>

#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace mk::engine::xxh64 {
namespace {

TEST(Xxh64Test, MatchesLibxxhashForEveryLengthClassAndAlignment) {
  std::vector<uint8_t> bytes(70000 + 8);
  std::mt19937_64 rng(42);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
  const size_t lengths[] = {0, 1, 3, 4, 7, 8, 15, 31, 32, 33, 63, 64, 100, 4096, 65536, 70000};
  for (size_t start : {0, 1, 3, 8}) {
    for (size_t n : lengths) {
      for (uint64_t seed : {uint64_t{0}, uint64_t{0x9e3779b97f4a7c15}}) {
        EXPECT_EQ(Hash(ByteSource{bytes.data() + start}, n, seed),
                  XXH64(bytes.data() + start, n, seed))
            << "length " << n << " start " << start << " seed " << seed;
      }
    }
  }
}

}  // namespace
}  // namespace mk::engine::xxh64
