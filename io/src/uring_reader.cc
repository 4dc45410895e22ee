// The io_uring reader. One thread owns the ring: it waits for completions (and, through a poll
// on an eventfd, for new requests), splits each request into chunks of `chunk_bytes`, reads
// them with READ_FIXED into registered staging buffers (at most `staging_buffers` in flight),
// matches every completion to its chunk through user_data, continues short reads, and lends
// the filled buffer to the caller's sink until it is released (ReadChunks; the release hands it
// back through the eventfd). Read into a caller's memory goes straight there when the kernel
// can write it (see Direct), else through staging and a copy; staging buffers double as the
// tokens that bound reads in flight either way.
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "mk/base/cpu_relax.h"
#include "mk/io/file_reader.h"
#include "reader_base.h"

namespace mk::io {
namespace {

constexpr uint64_t kWakeTag = 1;  // user_data of the eventfd poll (chunk ops are pointers)
constexpr uint64_t kDirectAlignment = 4096;

class UringReader final : public ReaderBase {
 public:
  // The thread starts in Start(), once the staging buffers are registered.
  UringReader(const ReaderOptions& options, io_uring ring, int wake_fd)
      : ReaderBase(options),
        options_(options),
        poll_us_(options.poll_before_sleep_us >= 0         ? options.poll_before_sleep_us
                 : std::thread::hardware_concurrency() > 4 ? 200
                                                           : 0),
        ring_(ring),
        wake_fd_(wake_fd) {
    for (uint32_t b = 0; b < options_.staging_buffers; ++b) free_buffers_.push_back(b);
  }

  ~UringReader() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    Wake();
    if (thread_.joinable()) thread_.join();  // the thread finishes every accepted read first
    if (buffers_registered_) io_uring_unregister_buffers(&ring_);
    io_uring_queue_exit(&ring_);
    close(wake_fd_);
  }

  absl::Status RegisterBuffers() {
    if (staging() == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("io: cannot allocate ", staging_bytes(), " bytes of staging buffers"));
    }
    std::vector<iovec> iov(options_.staging_buffers);
    for (uint32_t b = 0; b < options_.staging_buffers; ++b) {
      iov[b] = iovec{Buffer(b), options_.chunk_bytes};
    }
    if (const int r = io_uring_register_buffers(&ring_, iov.data(), iov.size()); r < 0) {
      return IoError(-r, "io_uring_register_buffers (check RLIMIT_MEMLOCK)");
    }
    buffers_registered_ = true;
    return absl::OkStatus();
  }
  void Start() {
    thread_ = std::thread([this] { Run(); });
  }

  const char* backend_name() const override { return "io_uring"; }

 private:
  struct Active {
    Request r;
    int fd = -1;
    uint64_t next_submit = 0;  // bytes of the range handed to chunks so far
    uint64_t done_bytes = 0;
    int inflight = 0;
    int held = 0;  // chunks a sink took and has not released yet
    int error = 0;
  };
  // A chunk whose sink released its staging buffer (any thread; handed to the ring thread).
  struct Released {
    Active* active;
    uint32_t buffer;
    uint32_t length;
  };

  absl::Status CheckRange(uint64_t offset, uint64_t length) const override {
    if (options_.o_direct && (offset % kDirectAlignment != 0 || length % kDirectAlignment != 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("io: O_DIRECT reads need 4096-aligned offset and length (got ", offset, ", ",
                       length, ")"));
    }
    return absl::OkStatus();
  }
  void Notify() override { Wake(); }
  struct ChunkOp {
    Active* active;
    uint32_t buffer;      // the staging buffer, or (direct) just a token bounding reads in flight
    uint64_t rel_offset;  // within the request's range
    uint32_t length;
    bool direct;  // read straight into the caller's dest (no staging, no copy)
    uint32_t received = 0;
  };

  // Spins up to poll_before_sleep_us until a completion is ready (false) or new requests or
  // released chunks wait (true). False also when the time ran out: the caller then sleeps.
  bool PollBriefly() {
    if (poll_us_ == 0) return false;
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(poll_us_);
    while (io_uring_cq_ready(&ring_) == 0) {
      if (work_posted_.exchange(false, std::memory_order_acq_rel)) return true;
      if (std::chrono::steady_clock::now() >= until) return false;
      for (int i = 0; i < 32; ++i) base::CpuRelax();
    }
    return false;
  }

  // New requests or released chunks: tells the ring thread. The eventfd (a system call, costly
  // on virtualized hosts) is written only when the ring thread sleeps or is about to: it
  // announces sleeping_ before its last look at work_posted_ (both sequentially consistent),
  // so one of the two sides always sees the other.
  void Wake() {
    work_posted_.store(true, std::memory_order_seq_cst);
    if (!sleeping_.load(std::memory_order_seq_cst)) return;
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }

  uint8_t* Buffer(uint32_t b) { return staging_.buffer(b); }

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
    const uint64_t at = a->r.offset + op->rel_offset + op->received;
    if (op->direct) {
      io_uring_prep_read(sqe, a->fd, a->r.dest + op->rel_offset + op->received,
                         op->length - op->received, at);
    } else {
      io_uring_prep_read_fixed(sqe, a->fd, Buffer(op->buffer) + op->received,
                               op->length - op->received, at, static_cast<int>(op->buffer));
    }
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
      auto opened = OpenForRead(options_, r.path);
      if (!opened.ok()) {
        ++errors_;
        r.done(opened.status(), 0);
        continue;
      }
      const int fd = opened->fd.Release();  // closed when the request ends (below, or Finish)
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
        const uint32_t len = static_cast<uint32_t>(
            std::min<uint64_t>(options_.chunk_bytes, a.r.length - a.next_submit));
        auto* op = new ChunkOp{&a, free_buffers_.back(), a.next_submit, len, Direct(a)};
        free_buffers_.pop_back();
        a.next_submit += len;
        SubmitRead(op);
      }
      if (free_buffers_.empty()) break;
    }
  }

  // Read (a caller's dest) skips the staging copy when the kernel can write dest itself: always
  // for buffered reads; with O_DIRECT when dest is 4 KiB aligned (chunks are 4 KiB multiples).
  // ReadChunks always reads into the registered staging buffers (READ_FIXED).
  bool Direct(const Active& a) const {
    if (a.r.dest == nullptr) return false;
    if (!options_.o_direct) return true;
    return reinterpret_cast<uintptr_t>(a.r.dest) % kDirectAlignment == 0;
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
      if (a->r.dest != nullptr && !op->direct) {
        std::memcpy(a->r.dest + op->rel_offset + op->received, Buffer(op->buffer) + op->received,
                    static_cast<size_t>(res));
      }
      op->received += static_cast<uint32_t>(res);
      bytes_received_.fetch_add(static_cast<uint64_t>(res), std::memory_order_relaxed);
      if (op->received < op->length && a->error == 0) {
        ++short_reads_;  // continue where the kernel stopped
        SubmitRead(op);
        chunk_finished = false;
      } else if (a->r.sink && a->error == 0) {
        HandToSink(op);  // the buffer comes back through Release
        delete op;
        return;
      } else {
        a->done_bytes += op->length;
      }
    }
    if (chunk_finished) {
      free_buffers_.push_back(op->buffer);
      delete op;
    }
  }

  void HandToSink(ChunkOp* op) {
    Active* a = op->active;
    const uint32_t buffer = op->buffer, length = op->length;
    absl::Status taken =
        a->r.sink(Chunk{Buffer(buffer), op->rel_offset, length}, [this, a, buffer, length] {
          {
            std::lock_guard<std::mutex> lock(mu_);
            released_.push_back(Released{a, buffer, length});
          }
          Wake();
        });
    if (taken.ok()) {
      ++a->held;
      return;
    }
    a->error = std::max(1, ErrnoOf(taken));
    if (a->error == 1) a->error = EIO;
    free_buffers_.push_back(buffer);
  }

  // Staging buffers the sinks released come back to the free list.
  void TakeReleased() {
    std::vector<Released> released;
    {
      std::lock_guard<std::mutex> lock(mu_);
      released.swap(released_);
    }
    for (const Released& r : released) {
      free_buffers_.push_back(r.buffer);
      r.active->done_bytes += r.length;
      --r.active->held;
    }
  }

  // Calls back requests that are complete or failed with nothing left in flight or held.
  void Retire() {
    for (auto it = active_.begin(); it != active_.end();) {
      Active& a = *it;
      const bool finished =
          a.inflight == 0 && a.held == 0 && (a.error != 0 || a.done_bytes == a.r.length);
      if (!finished) {
        ++it;
        continue;
      }
      close(a.fd);
      if (a.error != 0) {
        ++errors_;
        a.r.done(IoError(a.error,
                         absl::StrCat("read ", a.r.path, " [", a.r.offset, ", +", a.r.length, ")")),
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
      TakeReleased();
      Admit();
      Schedule();
      Retire();
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_ && queue_.empty() && active_.empty()) return;
      }
      io_uring_submit(&ring_);
      if (PollBriefly()) continue;  // new work (or releases) arrived: take it first
      sleeping_.store(true, std::memory_order_seq_cst);
      if (work_posted_.exchange(false, std::memory_order_seq_cst)) {
        sleeping_.store(false, std::memory_order_seq_cst);
        continue;
      }
      io_uring_cqe* cqe = nullptr;
      const int waited = io_uring_wait_cqe(&ring_, &cqe);
      sleeping_.store(false, std::memory_order_seq_cst);
      if (waited < 0) continue;
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
  const int poll_us_;  // resolved poll_before_sleep_us
  io_uring ring_;
  const int wake_fd_;
  std::atomic<bool> work_posted_{false};  // set by Wake; the polling ring thread takes it
  std::atomic<bool> sleeping_{true};      // the ring thread may be blocked in the kernel
  bool buffers_registered_ = false;
  std::vector<Released> released_;      // guarded by mu_
  std::vector<uint32_t> free_buffers_;  // ring thread only
  std::list<Active> active_;            // ring thread only (stable addresses for ChunkOps)
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<FileReader>> CreateUringReader(const ReaderOptions& options) {
  io_uring ring;
  const int rc = io_uring_queue_init(options.staging_buffers * 2 + 8, &ring, 0);
  if (rc < 0) return IoError(-rc, "io_uring_queue_init");
  const int wake_fd = eventfd(0, EFD_CLOEXEC);
  if (wake_fd < 0) {
    const int err = errno;
    io_uring_queue_exit(&ring);
    return IoError(err, "eventfd");
  }
  auto reader = std::make_unique<UringReader>(options, ring, wake_fd);  // owns ring and fd now
  if (absl::Status s = reader->RegisterBuffers(); !s.ok()) return s;
  reader->Start();
  return std::unique_ptr<FileReader>(std::move(reader));
}

}  // namespace mk::io
