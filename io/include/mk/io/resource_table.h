// The resource table behind LOAD_MISS: resource id -> (file under the resource root, byte
// range, owner). Resources are owned, and each owner has its own folder of the root:
//
//   <root>/tenants/<tenant id>/...   a tenant's files: Register(tenant, "a/b.bin") names
//                                    <root>/tenants/<tenant>/a/b.bin, nothing else
//   <root>/shared/...                read-only files every tenant may use; only the owner
//                                    kSharedOwner (the admin) registers them
//
// so a tenant cannot name another tenant's file. Paths are checked for form at registration
// and the file is opened confined beneath the owner's folder (RootDir) both at registration
// and at every read, so a file swapped for a symbolic link, a FIFO or a device later fails that
// read instead of reading outside the root or blocking.
//
// Thread safety: all methods may be called concurrently.
#ifndef MK_IO_RESOURCE_TABLE_H_
#define MK_IO_RESOURCE_TABLE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mk/io/root_dir.h"

namespace mk::io {

// The owner of resources in <root>/shared/.
inline constexpr uint32_t kSharedOwner = 0xFFFFFFFFu;

struct Resource {
  uint32_t id = 0;
  uint32_t tenant = 0;   // the owner: a tenant id, or kSharedOwner
  std::string path;      // as registered, relative to the owner's folder
  std::string location;  // relative to the root: tenants/<id>/<path> or shared/<path>
  uint64_t offset = 0;
  uint64_t length = 0;
};

class ResourceTable {
 public:
  // `max_per_owner`: registrations one owner may hold at once (0 = no limit).
  static absl::StatusOr<std::unique_ptr<ResourceTable>> Create(std::shared_ptr<const RootDir> root,
                                                               uint32_t max_per_owner = 0);

  // The folder of the root that `owner`'s paths are relative to ("tenants/7", "shared").
  static std::string OwnerFolder(uint32_t owner);

  // Registers [offset, offset + length) of `path` (relative to the owner's folder; length 0 =
  // to the end of the file). INVALID_ARGUMENT for malformed paths, symbolic links, non-regular
  // files and ranges past the end; NOT_FOUND for missing files; RESOURCE_EXHAUSTED past
  // max_per_owner.
  absl::StatusOr<uint32_t> Register(uint32_t owner, const std::string& path, uint64_t offset,
                                    uint64_t length);
  // Ids are the smallest free ones: a removed resource's id is given to the next registration
  // (the owner check on every use keeps a stale id from reaching another owner's file).
  absl::StatusOr<Resource> Lookup(uint32_t id) const;
  std::vector<Resource> List() const;
  size_t size() const;
  absl::Status Remove(uint32_t id);
  const RootDir& root() const { return *root_; }
  const std::shared_ptr<const RootDir>& shared_root() const { return root_; }

 private:
  ResourceTable(std::shared_ptr<const RootDir> root, uint32_t max_per_owner)
      : root_(std::move(root)), max_per_owner_(max_per_owner) {}

  const std::shared_ptr<const RootDir> root_;
  const uint32_t max_per_owner_;
  mutable std::mutex mu_;
  std::map<uint32_t, Resource> resources_;       // guarded by mu_
  std::map<uint32_t, uint32_t> count_by_owner_;  // guarded by mu_
  std::set<uint32_t> free_ids_;                  // removed ids, reused first; guarded by mu_
  uint32_t next_id_ = 1;                         // guarded by mu_
};

}  // namespace mk::io

#endif  // MK_IO_RESOURCE_TABLE_H_
