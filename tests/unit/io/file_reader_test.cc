// Both reader backends read real files with identical results; the io_uring cases skip with the
// reason where io_uring is blocked (e.g. a container's seccomp profile).
#include "mk/io/file_reader.h"

#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/io_uring.h"
#include "support/temp_files.h"

namespace mk::io {
namespace {

namespace fs = std::filesystem;

// Collects callbacks; waits for a count with a deadline.
class Results {
 public:
  ReadCallback Callback() {
    return [this](const absl::Status& s, uint64_t bytes) {
      // A copy with a representation of its own: the reader's thread drops its references to
      // `s` through Abseil's uninstrumented reference count, which ThreadSanitizer cannot see
      // (it reports the test thread's later reads as racing with that thread's delete).
      absl::Status own(s.code(), s.message());
      s.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
        own.SetPayload(url, absl::Cord(static_cast<std::string>(payload)));
      });
      std::lock_guard<std::mutex> lock(mu_);
      statuses_.push_back(std::move(own));
      bytes_.push_back(bytes);
      cv_.notify_all();
    };
  }
  bool WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return statuses_.size() >= n; });
  }
  std::vector<absl::Status> statuses() {
    std::lock_guard<std::mutex> lock(mu_);
    return statuses_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<absl::Status> statuses_;
  std::vector<uint64_t> bytes_;
};

class FileReaderTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    ReaderOptions o;
    o.backend = GetParam();
    o.chunk_bytes = 64 << 10;  // small chunks: a 3 MiB read is 48 chunks, 8 in flight
    o.staging_buffers = 8;
    auto reader = FileReader::Create(o);
    if (GetParam() == Backend::kUring) {
      MK_REQUIRE_IO_URING();
    }
    ASSERT_TRUE(reader.ok()) << reader.status();
    reader_ = *std::move(reader);
  }
  void TearDown() override { reader_.reset(); }
  std::string WriteFile(const std::string& name, size_t size, uint32_t seed) {
    contents_[name] = mk::testing::RandomBytes(size, seed);
    return dir_.WriteFile(name, contents_[name]);
  }
  const mk::testing::ScopedTempDir dir_{"mk_reader"};
  std::unique_ptr<FileReader> reader_;
  std::map<std::string, std::string> contents_;
};

TEST_P(FileReaderTest, ReportsItsBackend) {
  EXPECT_STREQ(reader_->backend_name(), GetParam() == Backend::kUring ? "io_uring" : "threads");
}

TEST_P(FileReaderTest, LargeRangesAreReadExactlyInChunks) {
  const std::string path = WriteFile("big.bin", (3 << 20) + 12345, 7);
  std::string dest(3 << 20, '\0');
  Results results;
  ASSERT_TRUE(reader_->Read(path, 12345, dest.size(), dest.data(), results.Callback()).ok());
  ASSERT_TRUE(results.WaitFor(1));
  ASSERT_TRUE(results.statuses()[0].ok()) << results.statuses()[0];
  EXPECT_TRUE(dest == contents_["big.bin"].substr(12345)) << "bytes differ from the file";
  EXPECT_GE(reader_->stats().chunks, 48u);
  EXPECT_EQ(reader_->stats().bytes, dest.size());
}

TEST_P(FileReaderTest, ManyConcurrentReadsEachGetTheirOwnBytes) {
  constexpr int kFiles = 20;
  std::vector<std::string> paths, dests(kFiles);
  for (int i = 0; i < kFiles; ++i) {
    paths.push_back(WriteFile("f" + std::to_string(i), 200000 + i * 1000, i));
    dests[i].resize(200000 + i * 1000);
  }
  Results results;
  for (int i = 0; i < kFiles; ++i) {
    ASSERT_TRUE(
        reader_->Read(paths[i], 0, dests[i].size(), dests[i].data(), results.Callback()).ok());
  }
  ASSERT_TRUE(results.WaitFor(kFiles));
  for (const absl::Status& s : results.statuses()) EXPECT_TRUE(s.ok()) << s;
  for (int i = 0; i < kFiles; ++i) {
    EXPECT_TRUE(dests[i] == contents_["f" + std::to_string(i)]) << "file " << i;
  }
}

TEST_P(FileReaderTest, MissingAndTruncatedFilesFailWithTheirErrno) {
  Results results;
  char buf[4096];
  ASSERT_TRUE(
      reader_->Read((dir_.path() / "missing").string(), 0, 10, buf, results.Callback()).ok());
  const std::string path = WriteFile("short.bin", 1000, 3);
  ASSERT_TRUE(reader_->Read(path, 0, 4000, buf, results.Callback()).ok());  // past the end
  ASSERT_TRUE(results.WaitFor(2));
  std::vector<int> errnos;
  for (const absl::Status& s : results.statuses()) {
    EXPECT_FALSE(s.ok());
    errnos.push_back(ErrnoOf(s));
  }
  EXPECT_THAT(errnos, ::testing::UnorderedElementsAre(ENOENT, ENODATA));
  EXPECT_EQ(reader_->stats().errors, 2u);
}

// ReadChunks lends staging buffers: a sink that keeps several chunks and releases them later,
// out of order, from another thread still assembles exactly the file's bytes, every chunk lies
// in staging(), and `done` comes only after the last release.
TEST_P(FileReaderTest, ChunksAreLentFromStagingUntilReleased) {
  const std::string path = WriteFile("lent.bin", (2 << 20) + 777, 11);
  const uint64_t length = (2 << 20) + 700;
  std::string assembled(length, '\0');
  std::mutex mu;
  std::vector<std::function<void()>> held;
  bool outside_staging = false;
  const uint8_t* lo = reader_->staging();
  const uint8_t* hi = lo + reader_->staging_bytes();
  Results results;
  ChunkSink sink = [&](const Chunk& c, std::function<void()> release) {
    std::lock_guard<std::mutex> lock(mu);
    if (c.data < lo || c.data + c.length > hi) outside_staging = true;
    std::memcpy(assembled.data() + c.offset, c.data, c.length);
    held.push_back(std::move(release));
    return absl::OkStatus();
  };
  ASSERT_TRUE(reader_->ReadChunks(path, 77, length, sink, results.Callback()).ok());
  // Release in reverse order of arrival, from this thread, until the read called back.
  uint64_t released = 0;
  for (;;) {
    std::vector<std::function<void()>> batch;
    {
      std::lock_guard<std::mutex> lock(mu);
      batch.swap(held);
    }
    for (auto it = batch.rbegin(); it != batch.rend(); ++it) (*it)();
    released += batch.size();
    if (results.statuses().size() == 1) break;
    std::this_thread::yield();
  }
  ASSERT_TRUE(results.statuses()[0].ok()) << results.statuses()[0];
  EXPECT_EQ(released, (length + (64 << 10) - 1) / (64 << 10));
  EXPECT_FALSE(outside_staging);
  EXPECT_TRUE(assembled == contents_["lent.bin"].substr(77, length)) << "bytes differ";
}

TEST_P(FileReaderTest, ASinkErrorFailsTheReadWithItsErrno) {
  const std::string path = WriteFile("refused.bin", 300000, 5);
  Results results;
  ChunkSink sink = [](const Chunk&, const std::function<void()>&) {
    return IoError(EFAULT, "copy");
  };
  ASSERT_TRUE(reader_->ReadChunks(path, 0, 300000, sink, results.Callback()).ok());
  ASSERT_TRUE(results.WaitFor(1));
  EXPECT_EQ(ErrnoOf(results.statuses()[0]), EFAULT) << results.statuses()[0];
}

// O_DIRECT reads land straight in an aligned destination and go through the staging buffers
// (and a copy) into an unaligned one; both give the file's bytes.
TEST_P(FileReaderTest, DirectReadsIntoAlignedAndUnalignedMemory) {
  ReaderOptions o;
  o.backend = GetParam();
  o.chunk_bytes = 64 << 10;
  o.staging_buffers = 4;
  o.o_direct = true;
  auto direct = FileReader::Create(o);
  ASSERT_TRUE(direct.ok()) << direct.status();
  const std::string path = WriteFile("direct.bin", 1 << 20, 21);
  std::unique_ptr<char, decltype(&std::free)> memory(
      static_cast<char*>(std::aligned_alloc(4096, (1 << 20) + 4096)), &std::free);
  Results results;
  ASSERT_TRUE((*direct)->Read(path, 4096, 512 << 10, memory.get(), results.Callback()).ok());
  ASSERT_TRUE(results.WaitFor(1));
  if (ErrnoOf(results.statuses()[0]) == EINVAL) {
    GTEST_SKIP() << "this file system does not support O_DIRECT: " << results.statuses()[0];
  }
  ASSERT_TRUE(results.statuses()[0].ok()) << results.statuses()[0];
  EXPECT_EQ(std::string(memory.get(), 512 << 10), contents_["direct.bin"].substr(4096, 512 << 10));
  char* unaligned = memory.get() + 8;
  ASSERT_TRUE((*direct)->Read(path, 8192, 512 << 10, unaligned, results.Callback()).ok());
  ASSERT_TRUE(results.WaitFor(2));
  ASSERT_TRUE(results.statuses()[1].ok()) << results.statuses()[1];
  EXPECT_EQ(std::string(unaligned, 512 << 10), contents_["direct.bin"].substr(8192, 512 << 10));
}

// A reader with a root opens every file confined at read time: a file swapped for a symbolic
// link or a FIFO after it was registered fails that read at once (no escape, no hang), and the
// other reads go on.
TEST_P(FileReaderTest, ARootConfinesEveryReadAtOpenTime) {
  dir_.WriteFile("root/tenants/1/weights.bin", std::string(4096, 'w'));
  dir_.WriteFile("secret.bin", std::string(4096, 's'));
  ReaderOptions o;
  o.backend = GetParam();
  o.chunk_bytes = 64 << 10;
  o.staging_buffers = 2;
  auto root = RootDir::Create((dir_.path() / "root").string());
  ASSERT_TRUE(root.ok()) << root.status();
  o.root = *root;
  auto reader = FileReader::Create(o);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::string dest(4096, '\0');
  Results results;
  ASSERT_TRUE(
      (*reader)->Read("tenants/1/weights.bin", 0, 4096, dest.data(), results.Callback()).ok());
  ASSERT_TRUE(results.WaitFor(1));
  ASSERT_TRUE(results.statuses()[0].ok()) << results.statuses()[0];
  EXPECT_EQ(dest, std::string(4096, 'w'));

  const fs::path file = dir_.path() / "root/tenants/1/weights.bin";
  fs::remove(file);
  fs::create_symlink(dir_.path() / "secret.bin", file);  // swapped after registration
  ASSERT_TRUE(
      (*reader)->Read("tenants/1/weights.bin", 0, 4096, dest.data(), results.Callback()).ok());
  ASSERT_TRUE(results.WaitFor(2));
  EXPECT_EQ(results.statuses()[1].code(), absl::StatusCode::kInvalidArgument)
      << results.statuses()[1];
  EXPECT_EQ(dest.find('s'), std::string::npos) << "no byte of the link's target was read";

  fs::remove(file);
  ASSERT_EQ(mkfifo(file.c_str(), 0600), 0);  // a blocking open would hang the io thread
  ASSERT_TRUE((*reader)
                  ->ReadChunks(
                      "tenants/1/weights.bin", 0, 4096,
                      [](const Chunk&, const std::function<void()>& release) {
                        release();
                        return absl::OkStatus();
                      },
                      results.Callback())
                  .ok());
  ASSERT_TRUE(results.WaitFor(3));
  EXPECT_THAT(results.statuses()[2].message(), ::testing::HasSubstr("not a regular file"));
  EXPECT_NE(ErrnoOf(results.statuses()[2]), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, FileReaderTest,
                         ::testing::Values(Backend::kUring, Backend::kThreads),
                         [](const auto& info) {
                           return info.param == Backend::kUring ? "io_uring" : "threads";
                         });

TEST(FileReaderCreateTest, RejectsUnalignedChunks) {
  ReaderOptions o;
  o.chunk_bytes = 1000;
  EXPECT_EQ(FileReader::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mk::io
