// RootDir opens files confined beneath a directory at open time, with openat2 and with the
// descriptor walk alike: symbolic links, FIFOs, devices and `..` never open, and nothing blocks.
#include "mk/io/root_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/io/file_reader.h"
#include "support/temp_files.h"

namespace mk::io {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class RootDirTest : public ::testing::TestWithParam<RootDir::Resolution> {
 protected:
  void SetUp() override {
    base_.WriteFile("root/a/file.bin", "inside");
    base_.WriteFile("outside.bin", "secret");
    fs::create_directories(base_.path() / "outside_dir");
    base_.WriteFile("outside_dir/x.bin", "secret too");
    auto root = RootDir::Create((base_.path() / "root").string(), GetParam());
    ASSERT_TRUE(root.ok()) << root.status();
    root_ = *root;
  }
  fs::path In(const std::string& name) const { return base_.path() / "root" / name; }
  const mk::testing::ScopedTempDir base_{"mk_rootdir"};
  std::shared_ptr<const RootDir> root_;
};

TEST_P(RootDirTest, OpensRegularFilesBeneathTheRoot) {
  auto f = root_->Open("a/file.bin");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->size, 6u);
  char buf[6];
  EXPECT_EQ(pread(f->fd.get(), buf, sizeof(buf), 0), 6);
  EXPECT_EQ(std::string(buf, 6), "inside");
}

TEST_P(RootDirTest, SymbolicLinksNeverOpenInAnyComponent) {
  fs::create_symlink(base_.path() / "outside.bin", In("file_link.bin"));
  fs::create_symlink(base_.path() / "outside_dir", In("dir_link"));
  fs::create_symlink("a/file.bin", In("inner_link.bin"));
  for (const char* path : {"file_link.bin", "dir_link/x.bin", "inner_link.bin"}) {
    auto f = root_->Open(path);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << path << f.status();
    EXPECT_THAT(f.status().message(), HasSubstr("symbolic link")) << path;
    EXPECT_NE(ErrnoOf(f.status()), 0) << "the errno travels with the error";
  }
}

TEST_P(RootDirTest, FifosAndDevicesFailAtOnceInsteadOfBlocking) {
  ASSERT_EQ(mkfifo(In("fifo").c_str(), 0600), 0);
  auto fifo = root_->Open("fifo");  // a blocking open would hang here: no writer
  EXPECT_EQ(fifo.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(fifo.status().message(), HasSubstr("not a regular file"));
  EXPECT_EQ(root_->Open("a").status().code(), absl::StatusCode::kInvalidArgument) << "a folder";
  auto dev = OpenRegularFile("/dev/null");
  EXPECT_EQ(dev.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(RootDirTest, MalformedPathsAreRejectedBeforeTouchingTheFileSystem) {
  for (const char* path : {"", "/etc/passwd", "../outside.bin", "a/../../outside.bin",
                           "a//file.bin", "./a/file.bin", "a/."}) {
    auto f = root_->Open(path);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << "'" << path << "'";
  }
  EXPECT_EQ(root_->Open("a/missing.bin").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(root_->Open("missing_dir/x.bin").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(RootDirTest, TheRootIsHeldOpenNotLookedUpAgain) {
  // Renaming the root away and putting a link in its place changes nothing for opens.
  fs::rename(base_.path() / "root", base_.path() / "moved");
  fs::create_symlink(base_.path() / "outside_dir", base_.path() / "root");
  auto f = root_->Open("a/file.bin");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->size, 6u);
  EXPECT_EQ(root_->Open("x.bin").status().code(), absl::StatusCode::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(Resolutions, RootDirTest,
                         ::testing::Values(RootDir::Resolution::kAuto, RootDir::Resolution::kWalk),
                         [](const auto& info) {
                           return info.param == RootDir::Resolution::kAuto ? "Openat2" : "Walk";
                         });

}  // namespace
}  // namespace mk::io
