// Temporary files for tests: a directory of the test's own under gtest's TempDir, removed with
// everything in it when the test ends, and reproducible pseudo-random file contents.
#ifndef MK_TESTS_SUPPORT_TEMP_FILES_H_
#define MK_TESTS_SUPPORT_TEMP_FILES_H_

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "gtest/gtest.h"

namespace mk::testing {

// `size` pseudo-random bytes, the same for the same seed.
inline std::string RandomBytes(size_t size, uint32_t seed) {
  std::string data(size, '\0');
  std::mt19937 rng(seed);
  for (char& c : data) c = static_cast<char>(rng());
  return data;
}

// A fresh directory under ::testing::TempDir() named after `prefix`, the process and a counter
// (tests of one binary, and concurrent binaries, never share one), removed at destruction.
class ScopedTempDir {
 public:
  explicit ScopedTempDir(const std::string& prefix) {
    static std::atomic<uint32_t> counter{0};
    path_ = std::filesystem::path(::testing::TempDir()) /
            (prefix + "_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScopedTempDir() {
    std::error_code ignored;  // a test may have removed it or made it unreadable
    std::filesystem::remove_all(path_, ignored);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Writes `contents` to `name` (relative to the directory; parents are created); returns the
  // file's full path.
  std::string WriteFile(const std::string& name, const std::string& contents) const {
    const std::filesystem::path file = path_ / name;
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary) << contents;
    return file.string();
  }

 private:
  std::filesystem::path path_;
};

}  // namespace mk::testing

#endif  // MK_TESTS_SUPPORT_TEMP_FILES_H_
