// Whether io_uring works in this process (a container's default seccomp profile, or
// kernel.io_uring_disabled, blocks it), for tests that exercise the io_uring reader: they skip
// with the reason where it is blocked, as the product falls back to its thread pool there.
#ifndef MK_TESTS_SUPPORT_IO_URING_H_
#define MK_TESTS_SUPPORT_IO_URING_H_

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "mk/io/file_reader.h"

namespace mk::testing {

// OK when an io_uring reader can be set up here; its error otherwise.
inline absl::Status IoUringAvailable() {
  io::ReaderOptions options;
  options.backend = io::Backend::kUring;
  options.staging_buffers = 1;
  return io::FileReader::Create(options).status();
}

}  // namespace mk::testing

// In a test body or SetUp: skips with the reason when io_uring is blocked here.
#define MK_REQUIRE_IO_URING()                                                            \
  if (const absl::Status mk_uring = ::mk::testing::IoUringAvailable(); !mk_uring.ok()) { \
    GTEST_SKIP() << "io_uring unavailable here: " << mk_uring;                           \
  }

#endif  // MK_TESTS_SUPPORT_IO_URING_H_
