#include "host/tree_hash.h"

#include <xxhash.h>

#include <vector>

namespace mk::engine::host {

TreeHashResult TreeHash(absl::Span<const uint8_t> bytes) {
  std::vector<uint8_t> leaves;
  leaves.reserve((bytes.size() / kTreeHashBlockBytes + 1) * 8);
  uint32_t blocks = 0;
  for (size_t at = 0; at < bytes.size(); at += kTreeHashBlockBytes) {
    const size_t n = std::min<size_t>(kTreeHashBlockBytes, bytes.size() - at);
    const uint64_t leaf = XXH64(bytes.data() + at, n, 0);
    for (int b = 0; b < 8; ++b) leaves.push_back(static_cast<uint8_t>(leaf >> (8 * b)));
    ++blocks;
  }
  return TreeHashResult{XXH64(leaves.data(), leaves.size(), 0), blocks};
}

}  // namespace mk::engine::host
