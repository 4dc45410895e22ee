// Asynchronous file reads for the resource loader: io_uring (registered staging buffers,
// READ_FIXED, large ranges split into chunks with several in flight, every completion matched
// by its own user_data, short reads continued), or a pread thread pool when io_uring is not
// available (ENOSYS/EPERM under default container seccomp profiles). Same API, same results.
//
// Thread safety: Read may be called from any thread. Callbacks run on the reader's own
// thread(s) and must not block; `dest` must stay valid until the callback ran. Destruction
// waits for every accepted read to call back.
#ifndef MK_IO_FILE_READER_H_
#define MK_IO_FILE_READER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace mk::io {

enum class Backend { kAuto, kUring, kThreads };

struct ReaderOptions {
  Backend backend = Backend::kAuto;
  uint32_t staging_buffers = 32;      // io_uring: registered buffers = reads in flight
  uint32_t chunk_bytes = 1u << 20;    // bytes per read (and per staging buffer)
  uint32_t threads = 4;               // thread-pool backend
  uint32_t max_queued_requests = 4096;  // beyond this Read answers RESOURCE_EXHAUSTED
  bool o_direct = false;              // bypass the page cache (4 KiB-aligned offset and length)
};

struct ReaderStats {
  uint64_t requests = 0;
  uint64_t bytes = 0;
  uint64_t errors = 0;
  uint64_t chunks = 0;
  uint64_t short_reads = 0;
};

// Called once per Read: OK with the bytes read (== length), or an error carrying the errno.
using ReadCallback = std::function<void(absl::Status status, uint64_t bytes)>;

class FileReader {
 public:
  // kAuto: io_uring when it can be set up, else the thread pool, with one log line on stderr
  // naming the cause and the fix. kUring fails with the cause instead of falling back.
  static absl::StatusOr<std::unique_ptr<FileReader>> Create(const ReaderOptions& options);
  virtual ~FileReader() = default;

  virtual absl::Status Read(const std::string& path, uint64_t offset, uint64_t length, void* dest,
                            ReadCallback done) = 0;
  virtual const char* backend_name() const = 0;  // "io_uring" or "threads"
  virtual ReaderStats stats() const = 0;
};

// An io error with its errno attached (ErrnoOf reads it back; 0 when none).
absl::Status IoError(int error_number, const std::string& what);
int ErrnoOf(const absl::Status& status);

// Internal factories (one per backend), used by Create.
absl::StatusOr<std::unique_ptr<FileReader>> CreateUringReader(const ReaderOptions& options);
std::unique_ptr<FileReader> CreateThreadPoolReader(const ReaderOptions& options);

}  // namespace mk::io

#endif  // MK_IO_FILE_READER_H_
