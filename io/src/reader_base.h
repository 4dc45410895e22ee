// What both reader backends share: the queued request, admission into a bounded queue, and
// the statistics counters. Private to io/.
#ifndef MK_IO_SRC_READER_BASE_H_
#define MK_IO_SRC_READER_BASE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

#include "mk/io/file_reader.h"

namespace mk::io {

class ReaderBase : public FileReader {
 public:
  ReaderStats stats() const override {
    return ReaderStats{requests_.load(), bytes_.load(), errors_.load(), chunks_.load(),
                       short_reads_.load()};
  }

 protected:
  struct Request {
    std::string path;
    uint64_t offset;
    uint64_t length;
    char* dest;
    ReadCallback done;
  };

  explicit ReaderBase(uint32_t max_queued) : max_queued_(max_queued) {}

  // Appends a request to `queue` (guarded by mu_, which the caller does not hold), or answers
  // RESOURCE_EXHAUSTED / FAILED_PRECONDITION. The caller wakes its worker afterwards.
  absl::Status Enqueue(const std::string& path, uint64_t offset, uint64_t length, void* dest,
                       ReadCallback done) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return absl::FailedPreconditionError("io: reader is shutting down");
    if (queue_.size() >= max_queued_) {
      return absl::ResourceExhaustedError(
          "io: too many reads queued; retry once earlier reads completed");
    }
    queue_.push_back(Request{path, offset, length, static_cast<char*>(dest), std::move(done)});
    return absl::OkStatus();
  }

  std::mutex mu_;
  std::deque<Request> queue_;  // guarded by mu_
  bool stop_ = false;          // guarded by mu_
  std::atomic<uint64_t> requests_{0}, bytes_{0}, errors_{0}, chunks_{0}, short_reads_{0};

 private:
  const uint32_t max_queued_;
};

}  // namespace mk::io

#endif  // MK_IO_SRC_READER_BASE_H_
