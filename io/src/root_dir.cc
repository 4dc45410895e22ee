#include "mk/io/root_dir.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "errno_text.h"
#include "mk/io/file_reader.h"

namespace mk::io {

namespace {

constexpr int kReadFlags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;

// openat2 is tried once per process; ENOSYS (old kernel) or EPERM (a seccomp profile that does
// not know it) switches every later open to the descriptor walk.
std::atomic<bool> openat2_unavailable{false};

absl::Status OpenError(int err, absl::string_view path) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return IoError(err, absl::StrCat("'", path, "' does not exist under the resource root"),
                     absl::StatusCode::kNotFound);
    case ELOOP:
    case EXDEV:
      return IoError(err,
                     absl::StrCat("'", path,
                                  "' passes a symbolic link or leaves the resource root; only "
                                  "plain files and folders under the root are read"),
                     absl::StatusCode::kInvalidArgument);
    default:
      return IoError(err, absl::StrCat("cannot open '", path, "'"));
  }
}

// The opened descriptor, checked to be a regular file, with its size.
absl::StatusOr<OpenedFile> CheckRegular(OwnedFd fd, absl::string_view path) {
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    const int err = errno;
    return IoError(err, absl::StrCat("cannot stat '", path, "'"));
  }
  if (!S_ISREG(st.st_mode)) {
    return IoError(EINVAL,
                   absl::StrCat("'", path,
                                "' is not a regular file (a FIFO, device, socket or folder); "
                                "only regular files are read"),
                   absl::StatusCode::kInvalidArgument);
  }
  return OpenedFile{std::move(fd), static_cast<uint64_t>(st.st_size)};
}

}  // namespace

OwnedFd& OwnedFd::operator=(OwnedFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.Release();
  }
  return *this;
}

OwnedFd::~OwnedFd() {
  if (fd_ >= 0) close(fd_);
}

absl::StatusOr<std::shared_ptr<const RootDir>> RootDir::Create(const std::string& path,
                                                               Resolution resolution) {
  const int fd = open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return absl::InvalidArgumentError(absl::StrCat("io: resource root ", path,
                                                   " is not an existing directory (",
                                                   ErrnoText(err), "); check --resource_root"));
  }
  return std::shared_ptr<const RootDir>(new RootDir(OwnedFd(fd), path, resolution));
}

absl::Status RootDir::CheckRelative(absl::string_view relative) {
  if (relative.empty() || relative.front() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("io: resource path '", relative, "' must be relative to the resource root"));
  }
  if (relative.size() > 4096) {
    return absl::InvalidArgumentError("io: resource path is longer than 4096 bytes");
  }
  for (absl::string_view part : absl::StrSplit(relative, '/')) {
    if (part.empty() || part == "." || part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("io: resource path '", relative,
                       "' has an empty, '.' or '..' component; name a file below the root"));
    }
    if (absl::StrContains(part, '\0')) {
      return absl::InvalidArgumentError("io: resource path contains a NUL byte");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<OwnedFd> RootDir::OpenWalking(absl::string_view relative, int flags) const {
  std::vector<std::string> parts = absl::StrSplit(relative, '/');
  OwnedFd dir;  // the current folder; fd_ while empty
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const int at = dir.get() >= 0 ? dir.get() : fd_.get();
    const int next = openat(at, parts[i].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      int err = errno;
      // O_NOFOLLOW | O_DIRECTORY on a link answers ENOTDIR: say it was a link, as openat2 does.
      struct stat st;
      if (err == ENOTDIR && fstatat(at, parts[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISLNK(st.st_mode)) {
        err = ELOOP;
      }
      return OpenError(err, relative);
    }
    dir = OwnedFd(next);
  }
  const int at = dir.get() >= 0 ? dir.get() : fd_.get();
  const int fd = openat(at, parts.back().c_str(), flags | O_NOFOLLOW);
  if (fd < 0) {
    const int err = errno;
    return OpenError(err, relative);
  }
  return OwnedFd(fd);
}

absl::StatusOr<OpenedFile> RootDir::Open(absl::string_view relative, bool o_direct) const {
  if (absl::Status s = CheckRelative(relative); !s.ok()) return s;
  const int flags = kReadFlags | (o_direct ? O_DIRECT : 0);
  const std::string path(relative);
  if (resolution_ == Resolution::kAuto && !openat2_unavailable.load(std::memory_order_relaxed)) {
    struct open_how how = {};
    how.flags = static_cast<uint64_t>(flags);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    const int64_t fd = syscall(SYS_openat2, fd_.get(), path.c_str(), &how, sizeof(how));
    if (fd >= 0) return CheckRegular(OwnedFd(static_cast<int>(fd)), relative);
    const int err = errno;
    if (err != ENOSYS && err != EPERM) return OpenError(err, relative);
    openat2_unavailable.store(true, std::memory_order_relaxed);
  }
  auto fd = OpenWalking(relative, flags);
  if (!fd.ok()) return fd.status();
  return CheckRegular(*std::move(fd), relative);
}

absl::StatusOr<OpenedFile> OpenRegularFile(const std::string& path, bool o_direct) {
  const int fd = open(path.c_str(), kReadFlags | O_NOFOLLOW | (o_direct ? O_DIRECT : 0));
  if (fd < 0) {
    const int err = errno;
    return IoError(err, absl::StrCat("open ", path),
                   err == ENOENT ? absl::StatusCode::kNotFound : absl::StatusCode::kUnavailable);
  }
  return CheckRegular(OwnedFd(fd), path);
}

}  // namespace mk::io
