// The io_uring reader. One thread owns the ring: it waits for completions (and, through a poll
// on an eventfd, for new requests), splits each request into chunks of `chunk_bytes`, reads
// them with READ_FIXED into registered staging buffers (at most `staging_buffers` in flight),
// matches every completion to its chunk through user_data, continues short reads, and copies
// the bytes to the caller's destination.
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "io/src/reader_base.h"
#include "mk/io/file_reader.h"

namespace mk::io {
namespace {

constexpr uint64_t kWakeTag = 1;  // user_data of the eventfd poll (chunk ops are pointers)
constexpr uint64_t kDirectAlignment = 4096;

class UringReader final : public ReaderBase {
 public:
  UringReader(const ReaderOptions& options, io_uring ring, char* staging, int wake_fd)
      : ReaderBase(options.max_queued_requests),
        options_(options), ring_(ring), staging_(staging), wake_fd_(wake_fd) {
    for (uint32_t b = 0; b < options_.staging_buffers; ++b) free_buffers_.push_back(b);
    thread_ = std::thread([this] { Run(); });
  }

  ~UringReader() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    Wake();
    thread_.join();  // the thread finishes every accepted read first
    io_uring_unregister_buffers(&ring_);
    io_uring_queue_exit(&ring_);
    close(wake_fd_);
    std::free(staging_);
  }

  absl::Status Read(const std::string& path, uint64_t offset, uint64_t length, void* dest,
                    ReadCallback done) override {
    if (options_.o_direct && (offset % kDirectAlignment != 0 || length % kDirectAlignment != 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "io: O_DIRECT reads need 4096-aligned offset and length (got ", offset, ", ", length,
          ")"));
    }
    if (absl::Status s = Enqueue(path, offset, length, dest, std::move(done)); !s.ok()) return s;
    Wake();
    return absl::OkStatus();
  }

  const char* backend_name() const override { return "io_uring"; }

 private:  struct Active {
    Request r;
    int fd = -1;
    uint64_t next_submit = 0;  // bytes of the range handed to chunks so far
    uint64_t done_bytes = 0;
    int inflight = 0;
    int error = 0;
  };
  struct ChunkOp {
    Active* active;
    uint32_t buffer;
    uint64_t rel_offset;  // within the request's range
    uint32_t length;
    uint32_t received = 0;
  };

  void Wake() {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }

  char* Buffer(uint32_t b) { return staging_ + size_t{b} * options_.chunk_bytes; }

  io_uring_sqe* Sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {  // the submission queue is full: hand it to the kernel first
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  void ArmWake() {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_poll_add(sqe, wake_fd_, POLLIN);
    io_uring_sqe_set_data64(sqe, kWakeTag);
  }

  void SubmitRead(ChunkOp* op) {
    Active* a = op->active;
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_read_fixed(sqe, a->fd, Buffer(op->buffer) + op->received,
                             op->length - op->received,
                             a->r.offset + op->rel_offset + op->received,
                             static_cast<int>(op->buffer));
    io_uring_sqe_set_data(sqe, op);
    ++a->inflight;
    ++chunks_;
  }

  // Takes new requests, opens their files; failures call back at once.
  void Admit() {
    std::deque<Request> fresh;
    {
      std::lock_guard<std::mutex> lock(mu_);
      fresh.swap(queue_);
    }
    for (Request& r : fresh) {
      ++requests_;
      const int fd = open(r.path.c_str(), O_RDONLY | O_CLOEXEC | (options_.o_direct ? O_DIRECT : 0));
      if (fd < 0) {
        const int err = errno;
        ++errors_;
        r.done(IoError(err, absl::StrCat("open ", r.path)), 0);
        continue;
      }
      if (r.length == 0) {
        close(fd);
        r.done(absl::OkStatus(), 0);
        continue;
      }
      active_.push_back(Active{std::move(r), fd});
    }
  }

  // Hands free staging buffers to chunks of the active requests, oldest first.
  void Schedule() {
    for (Active& a : active_) {
      while (!free_buffers_.empty() && a.error == 0 && a.next_submit < a.r.length) {
        const uint32_t len =
            static_cast<uint32_t>(std::min<uint64_t>(options_.chunk_bytes, a.r.length - a.next_submit));
        auto* op = new ChunkOp{&a, free_buffers_.back(), a.next_submit, len};
        free_buffers_.pop_back();
        a.next_submit += len;
        SubmitRead(op);
      }
      if (free_buffers_.empty()) break;
    }
  }

  void Complete(ChunkOp* op, int res) {
    Active* a = op->active;
    --a->inflight;
    bool chunk_finished = true;
    if (res == -EINTR || res == -EAGAIN) {
      SubmitRead(op);  // retry the same range
      return;
    }
    if (res < 0) {
      a->error = -res;
    } else if (res == 0) {
      a->error = ENODATA;  // the file ended before the registered range did
    } else {
      std::memcpy(a->r.dest + op->rel_offset + op->received, Buffer(op->buffer) + op->received,
                  static_cast<size_t>(res));
      op->received += static_cast<uint32_t>(res);
      if (op->received < op->length && a->error == 0) {
        ++short_reads_;  // continue where the kernel stopped
        SubmitRead(op);
        chunk_finished = false;
      } else {
        a->done_bytes += op->length;
      }
    }
    if (chunk_finished) {
      free_buffers_.push_back(op->buffer);
      delete op;
    }
  }

  // Calls back requests that are complete or failed with nothing left in flight.
  void Retire() {
    for (auto it = active_.begin(); it != active_.end();) {
      Active& a = *it;
      const bool finished = a.inflight == 0 && (a.error != 0 || a.done_bytes == a.r.length);
      if (!finished) {
        ++it;
        continue;
      }
      close(a.fd);
      if (a.error != 0) {
        ++errors_;
        a.r.done(IoError(a.error, absl::StrCat("read ", a.r.path, " [", a.r.offset, ", +",
                                               a.r.length, ")")),
                 a.done_bytes);
      } else {
        bytes_ += a.done_bytes;
        a.r.done(absl::OkStatus(), a.done_bytes);
      }
      it = active_.erase(it);
    }
  }

  void Run() {
    ArmWake();
    for (;;) {
      Admit();
      Schedule();
      Retire();
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_ && queue_.empty() && active_.empty()) return;
      }
      io_uring_submit(&ring_);
      io_uring_cqe* cqe = nullptr;
      if (io_uring_wait_cqe(&ring_, &cqe) < 0) continue;
      unsigned head;
      unsigned seen = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        if (io_uring_cqe_get_data64(cqe) == kWakeTag) {
          uint64_t value;
          (void)!read(wake_fd_, &value, sizeof(value));
          ArmWake();
        } else {
          Complete(static_cast<ChunkOp*>(io_uring_cqe_get_data(cqe)), cqe->res);
        }
      }
      io_uring_cq_advance(&ring_, seen);
    }
  }

  const ReaderOptions options_;
  io_uring ring_;
  char* staging_;  // staging_buffers x chunk_bytes, registered with the ring; owned
  const int wake_fd_;
  std::vector<uint32_t> free_buffers_;  // ring thread only
  std::list<Active> active_;            // ring thread only (stable addresses for ChunkOps)
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<FileReader>> CreateUringReader(const ReaderOptions& options) {
  if (options.staging_buffers == 0) {
    return absl::InvalidArgumentError("io: staging_buffers must be at least 1");
  }
  io_uring ring;
  const int rc = io_uring_queue_init(options.staging_buffers * 2 + 8, &ring, 0);
  if (rc < 0) return IoError(-rc, "io_uring_queue_init");
  const size_t bytes = size_t{options.staging_buffers} * options.chunk_bytes;
  char* staging = static_cast<char*>(std::aligned_alloc(kDirectAlignment, bytes));
  if (staging == nullptr) {
    io_uring_queue_exit(&ring);
    return absl::ResourceExhaustedError(absl::StrCat("io: cannot allocate ", bytes,
                                                     " bytes of staging buffers"));
  }
  std::vector<iovec> iov(options.staging_buffers);
  for (uint32_t b = 0; b < options.staging_buffers; ++b) {
    iov[b] = iovec{staging + size_t{b} * options.chunk_bytes, options.chunk_bytes};
  }
  if (const int r = io_uring_register_buffers(&ring, iov.data(), iov.size()); r < 0) {
    io_uring_queue_exit(&ring);
    std::free(staging);
    return IoError(-r, "io_uring_register_buffers (check RLIMIT_MEMLOCK)");
  }
  const int wake_fd = eventfd(0, EFD_CLOEXEC);
  if (wake_fd < 0) {
    const int err = errno;
    io_uring_unregister_buffers(&ring);
    io_uring_queue_exit(&ring);
    std::free(staging);
    return IoError(err, "eventfd");
  }
  return std::unique_ptr<FileReader>(new UringReader(options, ring, staging, wake_fd));
}

}  // namespace mk::io
