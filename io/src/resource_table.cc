#include "mk/io/resource_table.h"

#include "absl/strings/str_cat.h"

namespace mk::io {

absl::StatusOr<std::unique_ptr<ResourceTable>> ResourceTable::Create(
    std::shared_ptr<const RootDir> root, uint32_t max_per_owner) {
  if (root == nullptr) return absl::InvalidArgumentError("io: a resource table needs a root");
  return std::unique_ptr<ResourceTable>(new ResourceTable(std::move(root), max_per_owner));
}

std::string ResourceTable::OwnerFolder(uint32_t owner) {
  return owner == kSharedOwner ? std::string("shared") : absl::StrCat("tenants/", owner);
}

absl::StatusOr<uint32_t> ResourceTable::Register(uint32_t owner, const std::string& path,
                                                 uint64_t offset, uint64_t length) {
  if (absl::Status s = RootDir::CheckRelative(path); !s.ok()) return s;
  std::string location = absl::StrCat(OwnerFolder(owner), "/", path);
  auto opened = root_->Open(location);
  if (!opened.ok()) {
    // The message names the path as the owner wrote it, not the folder layout behind it.
    const std::string reason = opened.status().code() == absl::StatusCode::kNotFound
                                   ? absl::StrCat("does not exist in your folder (",
                                                  OwnerFolder(owner), "/ under the resource root)")
                               : opened.status().code() == absl::StatusCode::kInvalidArgument
                                   ? "is not a regular file reachable without symbolic links"
                                   : "cannot be opened";
    return absl::Status(opened.status().code(),
                        absl::StrCat("io: resource path '", path, "' ", reason));
  }
  const uint64_t size = opened->size;
  if (offset > size || (length != 0 && length > size - offset)) {
    return absl::InvalidArgumentError(absl::StrCat("io: range [", offset, ", ", offset + length,
                                                   ") is past the end of '", path, "' (", size,
                                                   " bytes)"));
  }
  if (length == 0) length = size - offset;
  std::lock_guard<std::mutex> lock(mu_);
  uint32_t& held = count_by_owner_[owner];
  if (max_per_owner_ != 0 && held >= max_per_owner_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("io: ", held, " resources registered, the limit per tenant is ",
                     max_per_owner_, "; evict one first (--max_resources_per_tenant)"));
  }
  ++held;
  // The smallest free id: ids stay dense, so a device residency table indexed by id modulo its
  // size sees no two live resources on one entry while fewer resources than entries exist.
  uint32_t id = next_id_;
  if (!free_ids_.empty()) {
    id = *free_ids_.begin();
    free_ids_.erase(free_ids_.begin());
  } else {
    ++next_id_;
  }
  resources_[id] = Resource{id, owner, path, std::move(location), offset, length};
  return id;
}

absl::StatusOr<Resource> ResourceTable::Lookup(uint32_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = resources_.find(id);
  if (it == resources_.end()) {
    return absl::NotFoundError(absl::StrCat("io: no resource ", id, "; register it first"));
  }
  return it->second;
}

std::vector<Resource> ResourceTable::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Resource> out;
  out.reserve(resources_.size());
  for (const auto& [id, r] : resources_) out.push_back(r);
  return out;
}

size_t ResourceTable::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return resources_.size();
}

absl::Status ResourceTable::Remove(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = resources_.find(id);
  if (it == resources_.end()) return absl::NotFoundError(absl::StrCat("io: no resource ", id));
  if (--count_by_owner_[it->second.tenant] == 0) count_by_owner_.erase(it->second.tenant);
  resources_.erase(it);
  free_ids_.insert(id);
  return absl::OkStatus();
}

}  // namespace mk::io
