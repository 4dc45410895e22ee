// The fallback reader: pread on a fixed pool of threads, one request per thread at a time.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "io/src/reader_base.h"
#include "mk/io/file_reader.h"

namespace mk::io {
namespace {

class ThreadPoolReader final : public ReaderBase {
 public:
  explicit ThreadPoolReader(const ReaderOptions& options)
      : ReaderBase(options.max_queued_requests), options_(options) {
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

  absl::Status Read(const std::string& path, uint64_t offset, uint64_t length, void* dest,
                    ReadCallback done) override {
    if (absl::Status s = Enqueue(path, offset, length, dest, std::move(done)); !s.ok()) return s;
    cv_.notify_one();
    return absl::OkStatus();
  }
  const char* backend_name() const override { return "threads"; }

 private:
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
    const int fd = open(r.path.c_str(), O_RDONLY | O_CLOEXEC | (options_.o_direct ? O_DIRECT : 0));
    if (fd < 0) {
      const int err = errno;
      ++errors_;
      return r.done(IoError(err, absl::StrCat("open ", r.path)), 0);
    }
    uint64_t done = 0;
    while (done < r.length) {
      const size_t want = std::min<uint64_t>(r.length - done, options_.chunk_bytes);
      const ssize_t n = pread(fd, r.dest + done, want, static_cast<off_t>(r.offset + done));
      ++chunks_;
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        close(fd);
        ++errors_;
        return r.done(IoError(err, absl::StrCat("read ", r.path)), done);
      }
      if (n == 0) {  // the file ended before the registered range did
        close(fd);
        ++errors_;
        return r.done(IoError(ENODATA, absl::StrCat(r.path, " ended at byte ", r.offset + done,
                                                    ", before the requested range")),
                      done);
      }
      if (static_cast<size_t>(n) < want) ++short_reads_;
      done += static_cast<uint64_t>(n);
    }
    close(fd);
    bytes_ += done;
    r.done(absl::OkStatus(), done);
  }

  const ReaderOptions options_;
  std::condition_variable cv_;  // with ReaderBase::mu_
  std::vector<std::thread> threads_;
};

}  // namespace

std::unique_ptr<FileReader> CreateThreadPoolReader(const ReaderOptions& options) {
  return std::make_unique<ThreadPoolReader>(options);
}

}  // namespace mk::io
