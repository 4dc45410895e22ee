#include "mk/io/resource_table.h"

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/temp_files.h"

namespace mk::io {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace fs = std::filesystem;

class ResourceTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_.WriteFile("root/tenants/3/sub/data.bin", std::string(1000, 'x'));
    base_.WriteFile("root/tenants/4/theirs.bin", "tenant 4's bytes");
    base_.WriteFile("root/shared/model.bin", std::string(64, 'm'));
    base_.WriteFile("outside.bin", "secret");
    fs::create_symlink(base_.path() / "outside.bin", base_.path() / "root/tenants/3/escape.bin");
    fs::create_symlink("sub/data.bin", base_.path() / "root/tenants/3/inside_link.bin");
    table_ = Make(0);
  }
  std::unique_ptr<ResourceTable> Make(uint32_t max_per_owner) {
    auto root = RootDir::Create((base_.path() / "root").string());
    EXPECT_TRUE(root.ok()) << root.status();
    return *ResourceTable::Create(*root, max_per_owner);
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
  EXPECT_EQ(r->path, "sub/data.bin");
  EXPECT_EQ(r->location, "tenants/3/sub/data.bin");
  EXPECT_EQ(r->offset, 100u);
  EXPECT_EQ(r->length, 900u) << "length 0 means to the end of the file";
  EXPECT_EQ(table_->List().size(), 1u);
  EXPECT_EQ(table_->size(), 1u);
  ASSERT_TRUE(table_->Remove(*id).ok());
  EXPECT_EQ(table_->Lookup(*id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(table_->Remove(*id).code(), absl::StatusCode::kNotFound);
}

TEST_F(ResourceTableTest, PathsThatEscapeTheRootAreRejected) {
  EXPECT_THAT(table_->Register(3, "../../outside.bin", 0, 0).status().message(), HasSubstr("'..'"));
  EXPECT_THAT(table_->Register(3, "sub/../../4/theirs.bin", 0, 0).status().message(),
              HasSubstr("'..'"));
  EXPECT_THAT(table_->Register(3, (base_.path() / "outside.bin").string(), 0, 0).status().message(),
              HasSubstr("relative"));
  EXPECT_THAT(table_->Register(3, "sub//data.bin", 0, 0).status().message(), HasSubstr("empty"));
  EXPECT_THAT(table_->Register(3, "./sub/data.bin", 0, 0).status().message(), HasSubstr("'.'"));
  // Symbolic links are refused whether they lead out of the root or stay inside it.
  for (const char* link : {"escape.bin", "inside_link.bin"}) {
    const absl::Status s = table_->Register(3, link, 0, 0).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << link;
    EXPECT_THAT(s.message(), HasSubstr("symbolic link")) << link;
    EXPECT_THAT(s.message(), Not(HasSubstr(base_.path().string()))) << "no absolute paths";
    EXPECT_THAT(s.message(), Not(HasSubstr("outside"))) << "no link targets";
  }
}

TEST_F(ResourceTableTest, EachTenantNamesOnlyItsOwnFolder) {
  // Tenant 3 cannot reach tenant 4's file by any spelling; tenant 4 can.
  EXPECT_EQ(table_->Register(3, "theirs.bin", 0, 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(table_->Register(3, "tenants/4/theirs.bin", 0, 0).status().code(),
            absl::StatusCode::kNotFound);
  auto theirs = table_->Register(4, "theirs.bin", 0, 0);
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  EXPECT_EQ(table_->Lookup(*theirs)->tenant, 4u);
  // The shared folder is the shared owner's; tenants do not see it as theirs.
  EXPECT_EQ(table_->Register(3, "model.bin", 0, 0).status().code(), absl::StatusCode::kNotFound);
  auto shared = table_->Register(kSharedOwner, "model.bin", 0, 0);
  ASSERT_TRUE(shared.ok()) << shared.status();
  EXPECT_EQ(table_->Lookup(*shared)->location, "shared/model.bin");
  EXPECT_EQ(ResourceTable::OwnerFolder(7), "tenants/7");
}

TEST_F(ResourceTableTest, MissingFilesAndBadRangesAreClearErrors) {
  const absl::Status missing = table_->Register(3, "sub/missing.bin", 0, 0).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("'sub/missing.bin'"));
  EXPECT_THAT(missing.message(), Not(HasSubstr(base_.path().string())));
  EXPECT_THAT(table_->Register(3, "sub/data.bin", 900, 200).status().message(),
              HasSubstr("past the end"));
  EXPECT_THAT(table_->Register(3, "sub", 0, 0).status().message(), HasSubstr("not a regular file"));
  EXPECT_EQ(RootDir::Create((base_.path() / "nope").string()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ResourceTable::Create(nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ResourceTableTest, RegistrationsPerOwnerAreLimitedAndIdsReused) {
  auto table = Make(2);
  auto a = table->Register(3, "sub/data.bin", 0, 10);
  auto b = table->Register(3, "sub/data.bin", 10, 10);
  ASSERT_TRUE(a.ok() && b.ok());
  const absl::Status third = table->Register(3, "sub/data.bin", 20, 10).status();
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.message(), HasSubstr("limit per tenant is 2"));
  EXPECT_TRUE(table->Register(4, "theirs.bin", 0, 0).ok()) << "the limit is per owner";
  ASSERT_TRUE(table->Remove(*a).ok());
  auto again = table->Register(3, "sub/data.bin", 20, 10);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *a) << "the smallest free id is reused";
}

}  // namespace
}  // namespace mk::io
