// Asynchronous file reads for the resource loader: io_uring (registered staging buffers,
// READ_FIXED, large ranges split into chunks with several in flight, every completion matched
// by its own user_data, short reads continued), or a pread thread pool when io_uring is not
// available (ENOSYS/EPERM under default container seccomp profiles). Same API, same results.
//
// Two ways to receive the bytes: Read copies them to a caller's `dest`; ReadChunks hands each
// chunk over in the reader's own staging memory (zero copy: a device engine registers that
// memory with its GPU once, through staging(), and copies chunks to device memory
// asynchronously while later chunks are read).
//
// Thread safety: Read and ReadChunks may be called from any thread. Callbacks and sinks run on
// the reader's own thread(s) and must not block; `dest` must stay valid until the callback ran.
// Destruction waits for every accepted read to call back (and so for every chunk's release).
#ifndef MK_IO_FILE_READER_H_
#define MK_IO_FILE_READER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "mk/io/root_dir.h"

namespace mk::io {

enum class Backend { kAuto, kUring, kThreads };

struct ReaderOptions {
  Backend backend = Backend::kAuto;
  uint32_t staging_buffers = 32;        // io_uring: registered buffers = reads in flight
  uint32_t chunk_bytes = 1u << 20;      // bytes per read (and per staging buffer)
  uint32_t threads = 4;                 // thread-pool backend
  uint32_t max_queued_requests = 4096;  // beyond this Read answers RESOURCE_EXHAUSTED
  bool o_direct = false;                // bypass the page cache (4 KiB-aligned offset and length)
  // Set: every path given to Read/ReadChunks is relative to this directory and opened confined
  // beneath it at read time (RootDir::Open). Unset: paths are opened as given, still
  // non-blocking and regular files only (benchmarks, tools).
  std::shared_ptr<const RootDir> root;
  // io_uring: how long the ring thread polls for completions and new work before it sleeps in
  // the kernel. A sleeping thread costs a wake-up per event (tens of microseconds on virtualized
  // hosts); polling costs CPU only right after activity, and only pays off with a core to spare
  // (on 2 cores a polling ring thread competes with the engine): -1 = 200 us on machines with
  // more than 4 cores, else 0. docs/performance.md has the measurements.
  int poll_before_sleep_us = -1;
};

struct ReaderStats {
  uint64_t requests = 0;
  uint64_t bytes = 0;
  uint64_t errors = 0;
  uint64_t chunks = 0;
  uint64_t short_reads = 0;
  // Bytes landed so far, counted as each read returns (a long read shows progress before it
  // finishes; `bytes` counts finished requests).
  uint64_t bytes_received = 0;
};

// Called once per Read: OK with the bytes read (== length), or an error carrying the errno.
using ReadCallback = std::function<void(absl::Status status, uint64_t bytes)>;

// One chunk of a ReadChunks range, fully read, in the reader's staging memory. `offset` is
// relative to the start of the range.
struct Chunk {
  const uint8_t* data;
  uint64_t offset;
  uint32_t length;
};
// Takes a chunk. OK: the sink now owns the staging buffer and must call `release` exactly once
// (from any thread) when it no longer reads the bytes. An error fails the whole read with that
// status; `release` must not be called then.
using ChunkSink = std::function<absl::Status(const Chunk& chunk, std::function<void()> release)>;

class FileReader {
 public:
  // kAuto: io_uring when it can be set up, else the thread pool, with one log line on stderr
  // naming the cause and the fix. kUring fails with the cause instead of falling back.
  static absl::StatusOr<std::unique_ptr<FileReader>> Create(const ReaderOptions& options);
  virtual ~FileReader() = default;

  virtual absl::Status Read(const std::string& path, uint64_t offset, uint64_t length, void* dest,
                            ReadCallback done) = 0;
  // Reads the range chunk by chunk into staging buffers and hands each to `sink` (in any order;
  // several may be outstanding). `done` runs once, after every chunk the sink took was released.
  virtual absl::Status ReadChunks(const std::string& path, uint64_t offset, uint64_t length,
                                  ChunkSink sink, ReadCallback done) = 0;
  // The staging memory chunks are delivered from: staging_buffers x chunk_bytes, page aligned,
  // allocated at Create and fixed for the reader's lifetime.
  virtual uint8_t* staging() const = 0;
  virtual size_t staging_bytes() const = 0;
  virtual const char* backend_name() const = 0;  // "io_uring" or "threads"
  virtual ReaderStats stats() const = 0;
};

// An io error with its errno attached (ErrnoOf reads it back; 0 when none).
absl::Status IoError(int error_number, const std::string& what,
                     absl::StatusCode code = absl::StatusCode::kUnavailable);
int ErrnoOf(const absl::Status& status);

}  // namespace mk::io

#endif  // MK_IO_FILE_READER_H_
