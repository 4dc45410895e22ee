// The resource table behind LOAD_MISS: resource id -> (file under the resource root, byte
// range, owning tenant). Paths are confined to the root: absolute paths, `..` components and
// symbolic links that lead outside it are rejected at registration.
//
// Thread safety: all methods may be called concurrently.
#ifndef MK_IO_RESOURCE_TABLE_H_
#define MK_IO_RESOURCE_TABLE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mk::io {

struct Resource {
  uint32_t id = 0;
  uint32_t tenant = 0;
  std::string path;      // as registered, relative to the root
  std::string resolved;  // canonical absolute path inside the root
  uint64_t offset = 0;
  uint64_t length = 0;
};

class ResourceTable {
 public:
  // `root` must be an existing directory.
  static absl::StatusOr<std::unique_ptr<ResourceTable>> Create(const std::string& root);

  // Registers [offset, offset + length) of `path` (relative to the root; length 0 = to the end
  // of the file). INVALID_ARGUMENT for paths that escape the root or ranges past the end of
  // the file; NOT_FOUND for missing files.
  absl::StatusOr<uint32_t> Register(uint32_t tenant, const std::string& path, uint64_t offset,
                                    uint64_t length);
  absl::StatusOr<Resource> Lookup(uint32_t id) const;
  std::vector<Resource> List() const;
  absl::Status Remove(uint32_t id);
  const std::string& root() const { return root_; }

 private:
  explicit ResourceTable(std::string root) : root_(std::move(root)) {}

  const std::string root_;  // canonical, without a trailing slash
  mutable std::mutex mu_;
  std::map<uint32_t, Resource> resources_;  // guarded by mu_
  uint32_t next_id_ = 1;                    // guarded by mu_
};

}  // namespace mk::io

#endif  // MK_IO_RESOURCE_TABLE_H_
