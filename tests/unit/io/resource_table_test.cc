#include "mk/io/resource_table.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/temp_files.h"

namespace mk::io {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class ResourceTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_.WriteFile("root/sub/data.bin", std::string(1000, 'x'));
    base_.WriteFile("outside.bin", "secret");
    fs::create_symlink(base_.path() / "outside.bin", base_.path() / "root" / "escape.bin");
    table_ = *ResourceTable::Create((base_.path() / "root").string());
  }
  const mk::testing::ScopedTempDir base_{"mk_rt"};
  std::unique_ptr<ResourceTable> table_;
};

TEST_F(ResourceTableTest, RegisterLookupListRemove) {
  auto id = table_->Register(3, "sub/data.bin", 100, 0);
  ASSERT_TRUE(id.ok()) << id.status();
  auto r = table_->Lookup(*id);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tenant, 3u);
  EXPECT_EQ(r->offset, 100u);
  EXPECT_EQ(r->length, 900u) << "length 0 means to the end of the file";
  EXPECT_EQ(table_->List().size(), 1u);
  ASSERT_TRUE(table_->Remove(*id).ok());
  EXPECT_EQ(table_->Lookup(*id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(table_->Remove(*id).code(), absl::StatusCode::kNotFound);
}

TEST_F(ResourceTableTest, PathsThatEscapeTheRootAreRejected) {
  EXPECT_THAT(table_->Register(0, "../outside.bin", 0, 0).status().message(), HasSubstr("'..'"));
  EXPECT_THAT(table_->Register(0, "sub/../../outside.bin", 0, 0).status().message(),
              HasSubstr("'..'"));
  EXPECT_THAT(table_->Register(0, (base_.path() / "outside.bin").string(), 0, 0).status().message(),
              HasSubstr("relative"));
  EXPECT_THAT(table_->Register(0, "escape.bin", 0, 0).status().message(),
              HasSubstr("symbolic link escapes"));
}

TEST_F(ResourceTableTest, MissingFilesAndBadRangesAreClearErrors) {
  EXPECT_EQ(table_->Register(0, "sub/missing.bin", 0, 0).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(table_->Register(0, "sub/data.bin", 900, 200).status().message(),
              HasSubstr("past the end"));
  EXPECT_THAT(table_->Register(0, "sub", 0, 0).status().message(), HasSubstr("not a regular file"));
  EXPECT_EQ(ResourceTable::Create((base_.path() / "nope").string()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mk::io
