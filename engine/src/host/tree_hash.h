// The CHECKSUM tree hash (docs/protocol.md, "Opcodes"): leaf = XXH64 of each 64 KiB block (seed 0),
// root = XXH64 of the concatenated little-endian leaf hashes (seed 0).
#ifndef MK_ENGINE_SRC_HOST_TREE_HASH_H_
#define MK_ENGINE_SRC_HOST_TREE_HASH_H_

#include <cstdint>

#include "absl/types/span.h"

namespace mk::engine::host {

inline constexpr uint64_t kTreeHashBlockBytes = uint64_t{64} * 1024;

struct TreeHashResult {
  uint64_t root = 0;
  uint32_t blocks = 0;
};

TreeHashResult TreeHash(absl::Span<const uint8_t> bytes);

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_TREE_HASH_H_
