// The fallback reader: pread on a fixed pool of threads, one request per thread at a time.
// Read preads straight into the caller's memory (through a staging buffer when O_DIRECT meets
// unaligned memory); ReadChunks preads each chunk into a free staging buffer (waiting for one
// when all are lent out) and lends it to the sink.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "mk/io/file_reader.h"
#include "reader_base.h"

namespace mk::io {
namespace {

class ThreadPoolReader final : public ReaderBase {
 public:
  explicit ThreadPoolReader(const ReaderOptions& options) : ReaderBase(options), options_(options) {
    for (uint32_t b = 0; b < options_.staging_buffers; ++b) free_buffers_.push_back(b);
    for (uint32_t i = 0; i < std::max(1u, options.threads); ++i) {
      threads_.emplace_back([this] { Run(); });
    }
  }
  ~ThreadPoolReader() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  const char* backend_name() const override { return "threads"; }

 private:
  void Notify() override { cv_.notify_one(); }

  // A staging buffer for one chunk of a ReadChunks request; waits while all are lent out.
  uint32_t TakeBuffer() {
    std::unique_lock<std::mutex> lock(buffers_mu_);
    buffers_cv_.wait(lock, [this] { return !free_buffers_.empty(); });
    const uint32_t b = free_buffers_.back();
    free_buffers_.pop_back();
    return b;
  }
  void ReturnBuffer(uint32_t b) {
    {
      std::lock_guard<std::mutex> lock(buffers_mu_);
      free_buffers_.push_back(b);
    }
    buffers_cv_.notify_all();
  }

  // Reads `want` bytes at `at` completely (continuing short reads); 0 or the errno.
  int ReadFully(int fd, char* to, size_t want, uint64_t at) {
    size_t got = 0;
    while (got < want) {
      const ssize_t n = pread(fd, to + got, want - got, static_cast<off_t>(at + got));
      ++chunks_;
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      if (n == 0) return ENODATA;  // the file ended before the registered range did
      if (static_cast<size_t>(n) < want - got) ++short_reads_;
      got += static_cast<size_t>(n);
      bytes_received_.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    }
    return 0;
  }

  void Run() {
    for (;;) {
      Request r;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, and every accepted read has run
        r = std::move(queue_.front());
        queue_.pop_front();
      }
      Execute(r);
    }
  }

  void Execute(Request& r) {
    ++requests_;
    auto opened = OpenForRead(options_, r.path);
    if (!opened.ok()) {
      ++errors_;
      return r.done(opened.status(), 0);
    }
    const int fd = opened->fd.Release();  // closed below once the range is read
    // Chunks lent to the sink and not released yet; `done` runs once they all came back.
    struct Lent {
      std::mutex mu;
      std::condition_variable cv;
      int count = 0;
    };
    auto lent = std::make_shared<Lent>();
    uint64_t done = 0;
    int error = 0;
    while (done < r.length && error == 0) {
      const size_t want = std::min<uint64_t>(r.length - done, options_.chunk_bytes);
      // O_DIRECT needs aligned memory: an unaligned dest is read through a staging buffer.
      const bool direct =
          r.sink == nullptr &&
          (!options_.o_direct ||
           reinterpret_cast<uintptr_t>(r.dest + done) % StagingMemory::kAlignment == 0);
      if (direct) {
        error = ReadFully(fd, r.dest + done, want, r.offset + done);
        if (error == 0) done += want;
        continue;
      }
      const uint32_t b = TakeBuffer();
      error = ReadFully(fd, reinterpret_cast<char*>(staging_.buffer(b)), want, r.offset + done);
      if (error != 0) {
        ReturnBuffer(b);
        break;
      }
      if (r.sink == nullptr) {
        std::memcpy(r.dest + done, staging_.buffer(b), want);
        ReturnBuffer(b);
        done += want;
        continue;
      }
      {
        std::lock_guard<std::mutex> lock(lent->mu);
        ++lent->count;
      }
      absl::Status taken =
          r.sink(Chunk{staging_.buffer(b), done, static_cast<uint32_t>(want)}, [this, b, lent] {
            ReturnBuffer(b);
            std::lock_guard<std::mutex> lock(lent->mu);
            if (--lent->count == 0) lent->cv.notify_all();
          });
      if (!taken.ok()) {
        ReturnBuffer(b);
        std::lock_guard<std::mutex> lock(lent->mu);
        --lent->count;
        error = ErrnoOf(taken) != 0 ? ErrnoOf(taken) : EIO;
        break;
      }
      done += want;
    }
    close(fd);
    {
      std::unique_lock<std::mutex> lock(lent->mu);
      lent->cv.wait(lock, [&] { return lent->count == 0; });
    }
    if (error != 0) {
      ++errors_;
      return r.done(
          IoError(error, absl::StrCat("read ", r.path, " [", r.offset, ", +", r.length, ")")),
          done);
    }
    bytes_ += done;
    r.done(absl::OkStatus(), done);
  }

  const ReaderOptions options_;
  std::condition_variable cv_;  // with ReaderBase::mu_
  std::mutex buffers_mu_;
  std::condition_variable buffers_cv_;  // a staging buffer came back
  std::vector<uint32_t> free_buffers_;  // guarded by buffers_mu_
  std::vector<std::thread> threads_;    // last: started after everything they use
};

}  // namespace

std::unique_ptr<FileReader> CreateThreadPoolReader(const ReaderOptions& options) {
  return std::make_unique<ThreadPoolReader>(options);
}

}  // namespace mk::io
