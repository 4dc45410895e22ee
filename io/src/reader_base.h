// What both reader backends share, and their factories: Read and ReadChunks (a range check,
// admission into a bounded queue, then the backend's Notify), the staging memory, and the
// statistics counters. Private to io/.
#ifndef MK_IO_SRC_READER_BASE_H_
#define MK_IO_SRC_READER_BASE_H_

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "mk/io/file_reader.h"

namespace mk::io {

// The staging buffers (staging_buffers x chunk_bytes, 4 KiB aligned for O_DIRECT), owned by
// the reader for its whole lifetime.
class StagingMemory {
 public:
  static constexpr size_t kAlignment = 4096;
  // Null data() when the allocation failed.
  explicit StagingMemory(const ReaderOptions& options)
      : chunk_bytes_(options.chunk_bytes),
        bytes_((size_t{options.staging_buffers} * options.chunk_bytes + kAlignment - 1) /
               kAlignment * kAlignment),
        data_(static_cast<uint8_t*>(bytes_ == 0 ? nullptr
                                                : std::aligned_alloc(kAlignment, bytes_))) {}
  uint8_t* data() const { return data_.get(); }
  size_t bytes() const { return bytes_; }
  uint8_t* buffer(uint32_t b) const { return data_.get() + size_t{b} * chunk_bytes_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  const size_t chunk_bytes_;
  const size_t bytes_;
  std::unique_ptr<uint8_t, Free> data_;
};

// Opens a request's file the way `options` says: confined beneath options.root when it is set,
// else as given; regular files only, never blocking. The error carries the errno.
inline absl::StatusOr<OpenedFile> OpenForRead(const ReaderOptions& options,
                                              const std::string& path) {
  return options.root != nullptr ? options.root->Open(path, options.o_direct)
                                 : OpenRegularFile(path, options.o_direct);
}

class ReaderBase : public FileReader {
 public:
  ReaderStats stats() const override {
    return ReaderStats{requests_.load(), bytes_.load(),       errors_.load(),
                       chunks_.load(),   short_reads_.load(), bytes_received_.load()};
  }
  uint8_t* staging() const override { return staging_.data(); }
  size_t staging_bytes() const override { return staging_.bytes(); }

  // Both ways in queue a request the same way: checked, queued, the worker told.
  absl::Status Read(const std::string& path, uint64_t offset, uint64_t length, void* dest,
                    ReadCallback done) final {
    return Accept(path, offset, length, dest, nullptr, std::move(done));
  }
  absl::Status ReadChunks(const std::string& path, uint64_t offset, uint64_t length, ChunkSink sink,
                          ReadCallback done) final {
    return Accept(path, offset, length, nullptr, std::move(sink), std::move(done));
  }

 protected:
  // A backend's own refusal of a range (INVALID_ARGUMENT), before anything is queued.
  virtual absl::Status CheckRange(uint64_t /*offset*/, uint64_t /*length*/) const {
    return absl::OkStatus();
  }
  // A request was queued: wake the backend's worker. Called without mu_ held.
  virtual void Notify() = 0;

  struct Request {
    std::string path;
    uint64_t offset;
    uint64_t length;
    char* dest;      // Read: where the bytes go
    ChunkSink sink;  // ReadChunks: who takes the chunks (dest is null)
    ReadCallback done;
  };

  explicit ReaderBase(const ReaderOptions& options)
      : staging_(options), max_queued_(options.max_queued_requests) {}

  StagingMemory staging_;
  std::mutex mu_;
  std::deque<Request> queue_;  // guarded by mu_
  bool stop_ = false;          // guarded by mu_
  std::atomic<uint64_t> requests_{0}, bytes_{0}, errors_{0}, chunks_{0}, short_reads_{0};
  std::atomic<uint64_t> bytes_received_{0};  // as each read lands, reads in flight included

 private:
  // Appends a request to `queue_`, or answers RESOURCE_EXHAUSTED / FAILED_PRECONDITION.
  absl::Status Accept(const std::string& path, uint64_t offset, uint64_t length, void* dest,
                      ChunkSink sink, ReadCallback done) {
    if (absl::Status s = CheckRange(offset, length); !s.ok()) return s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return absl::FailedPreconditionError("io: reader is shutting down");
      if (queue_.size() >= max_queued_) {
        return absl::ResourceExhaustedError(
            "io: too many reads queued; retry once earlier reads completed");
      }
      queue_.push_back(Request{path, offset, length, static_cast<char*>(dest), std::move(sink),
                               std::move(done)});
    }
    Notify();
    return absl::OkStatus();
  }

  const uint32_t max_queued_;
};

// The backends' factories, used by FileReader::Create (uring_reader.cc, thread_pool_reader.cc).
absl::StatusOr<std::unique_ptr<FileReader>> CreateUringReader(const ReaderOptions& options);
std::unique_ptr<FileReader> CreateThreadPoolReader(const ReaderOptions& options);

}  // namespace mk::io

#endif  // MK_IO_SRC_READER_BASE_H_
