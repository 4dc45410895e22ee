// A directory that files are opened beneath, confined at open time (not only when a path was
// registered): a path is resolved component by component under the directory, no component may
// be a symbolic link, `..` or absolute, and only regular files open. Opening never blocks on a
// FIFO or a device (O_NONBLOCK, then the file type is checked on the open descriptor), so a
// registered file swapped for a symbolic link, a FIFO or a device node fails that one read with
// a clear error instead of reading outside the directory or hanging the io thread.
//
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) where the kernel and
// the seccomp profile allow it; otherwise a walk of O_PATH | O_NOFOLLOW directory descriptors
// with the same guarantees.
//
// Ownership and threads: a RootDir owns one O_PATH descriptor of the directory for its lifetime
// (renaming the directory afterwards does not move what it opens). Every method is safe from
// any thread. Error messages name paths as given (relative to the directory), never the
// directory's absolute path or a link's target.
#ifndef MK_IO_ROOT_DIR_H_
#define MK_IO_ROOT_DIR_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mk::io {

// An open file descriptor, closed when the object goes.
class OwnedFd {
 public:
  OwnedFd() = default;
  explicit OwnedFd(int fd) : fd_(fd) {}
  OwnedFd(OwnedFd&& other) noexcept : fd_(other.Release()) {}
  OwnedFd& operator=(OwnedFd&& other) noexcept;
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  ~OwnedFd();

  int get() const { return fd_; }
  int Release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

struct OpenedFile {
  OwnedFd fd;
  uint64_t size = 0;
};

class RootDir {
 public:
  // How paths are resolved: kAuto tries openat2 and walks descriptors where it is unavailable;
  // kWalk always walks (tests check that both confine alike).
  enum class Resolution { kAuto, kWalk };
  // `path` must name an existing directory. INVALID_ARGUMENT otherwise.
  static absl::StatusOr<std::shared_ptr<const RootDir>> Create(
      const std::string& path, Resolution resolution = Resolution::kAuto);

  // Opens `relative` read-only beneath the directory. INVALID_ARGUMENT for a path that is empty,
  // absolute, has `..`, `.` or empty components, passes a symbolic link, or names something
  // other than a regular file; NOT_FOUND when it does not exist; the errno otherwise (see
  // IoError / ErrnoOf in file_reader.h).
  absl::StatusOr<OpenedFile> Open(absl::string_view relative, bool o_direct = false) const;

  // Checks the form of `relative` without touching the file system (Open checks it too).
  static absl::Status CheckRelative(absl::string_view relative);

  const std::string& display_path() const { return display_path_; }

 private:
  RootDir(OwnedFd fd, std::string display_path, Resolution resolution)
      : fd_(std::move(fd)), display_path_(std::move(display_path)), resolution_(resolution) {}
  absl::StatusOr<OwnedFd> OpenWalking(absl::string_view relative, int flags) const;

  const OwnedFd fd_;  // O_PATH | O_DIRECTORY
  const std::string display_path_;
  const Resolution resolution_;
};

// Opens an absolute or working-directory path the same careful way (non-blocking, regular files
// only, final component not a symbolic link): for readers used without a root (benchmarks).
absl::StatusOr<OpenedFile> OpenRegularFile(const std::string& path, bool o_direct = false);

}  // namespace mk::io

#endif  // MK_IO_ROOT_DIR_H_
