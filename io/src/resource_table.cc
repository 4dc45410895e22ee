#include "mk/io/resource_table.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "errno_text.h"

namespace mk::io {

namespace {

absl::StatusOr<std::string> Canonical(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrCat("io: ", path, " does not exist"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("io: cannot resolve ", path, " (", ErrnoText(err), ")"));
  }
  return std::string(buf);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ResourceTable>> ResourceTable::Create(const std::string& root) {
  auto canonical = Canonical(root);
  if (!canonical.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("io: resource root ", root, " is not usable (", canonical.status().message(),
                     "); pass an existing directory with --resource_root"));
  }
  struct stat st;
  if (stat(canonical->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("io: resource root ", root, " is not a directory"));
  }
  return std::unique_ptr<ResourceTable>(new ResourceTable(*canonical));
}

absl::StatusOr<uint32_t> ResourceTable::Register(uint32_t tenant, const std::string& path,
                                                 uint64_t offset, uint64_t length) {
  if (path.empty() || path[0] == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("io: resource path '", path, "' must be relative to the resource root"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("io: resource path '", path, "' contains '..'; paths stay in the root"));
    }
  }
  auto resolved = Canonical(root_ + "/" + path);
  if (!resolved.ok()) return resolved.status();
  if (!absl::StartsWith(*resolved, root_ + "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("io: resource path '", path, "' resolves to ", *resolved,
                     " outside the resource root (a symbolic link escapes it)"));
  }
  struct stat st;
  if (stat(resolved->c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("io: ", path, " is not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (offset > size || (length != 0 && length > size - offset)) {
    return absl::InvalidArgumentError(absl::StrCat("io: range [", offset, ", ", offset + length,
                                                   ") is past the end of ", path, " (", size,
                                                   " bytes)"));
  }
  if (length == 0) length = size - offset;
  std::lock_guard<std::mutex> lock(mu_);
  const uint32_t id = next_id_++;
  resources_[id] = Resource{id, tenant, path, *resolved, offset, length};
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
  for (const auto& [id, r] : resources_) out.push_back(r);
  return out;
}

absl::Status ResourceTable::Remove(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (resources_.erase(id) == 0) {
    return absl::NotFoundError(absl::StrCat("io: no resource ", id));
  }
  return absl::OkStatus();
}

}  // namespace mk::io
