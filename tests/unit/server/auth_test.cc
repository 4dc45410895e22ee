// The tenants file and bearer-token authentication: what a file may hold, the precise error for
// each malformed line, and who a header makes the caller.
#include "auth.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/temp_files.h"

namespace mk::server {
namespace {

using ::testing::HasSubstr;

class TenantDirectoryTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::unique_ptr<TenantDirectory>> Load(const std::string& text) {
    return TenantDirectory::Load(files_.WriteFile("tenants.txt", text), /*max_tenants=*/16);
  }
  const mk::testing::ScopedTempDir files_{"mk_auth_unit"};
};

TEST_F(TenantDirectoryTest, LoadsTenantsAndTheAdminSkippingCommentsAndBlankLines) {
  auto d = Load(
      "# who may call\n\ntenant 3 tenant-three-token   # trailing comment\n"
      "admin the-admin-token\n");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE((*d)->development_mode());
  EXPECT_EQ((*d)->tenant_count(), 2u);
  auto tenant = (*d)->AuthenticateHeader("Bearer tenant-three-token");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  EXPECT_EQ(tenant->tenant, 3u);
  EXPECT_FALSE(tenant->admin);
  auto admin = (*d)->AuthenticateHeader("Bearer the-admin-token");
  ASSERT_TRUE(admin.ok());
  EXPECT_TRUE(admin->admin);
}

TEST_F(TenantDirectoryTest, EachMalformedLineIsNamedWithItsReason) {
  struct Case {
    std::string text, reason;
  };
  const Case cases[] = {
      {"tenant 16 sixteen-token\n", "tenants.txt:1: tenant id '16' is not 0..15"},
      {"tenant x x-tenant-token\n", "tenant id 'x'"},
      {"tenant 1 short\n", "token shorter than 8 characters"},
      {"tenant 1 same-token-twice\nadmin same-token-twice\n", "tenants.txt:2: token used twice"},
      {"tenant 1\n", "malformed entry"},
      {"root one-token-here\n", "malformed entry"},
  };
  for (const Case& c : cases) {
    auto d = Load(c.text);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(d.status().message(), HasSubstr(c.reason)) << c.text;
    EXPECT_THAT(d.status().message(), HasSubstr("expected 'tenant <id> <token>'")) << c.text;
  }
}

TEST_F(TenantDirectoryTest, AMissingFileIsNotFoundNamingTheFlag) {
  auto d = TenantDirectory::Load("/nonexistent/tenants.txt", 16);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(d.status().message(), HasSubstr("--tenants_file"));
}

TEST_F(TenantDirectoryTest, HeadersWithoutAValidBearerTokenAreUnauthenticated) {
  auto d = *Load("tenant 1 tenant-one-token\n");
  for (std::optional<absl::string_view> header :
       {std::optional<absl::string_view>(), std::optional<absl::string_view>("tenant-one-token"),
        std::optional<absl::string_view>("Basic tenant-one-token"),
        std::optional<absl::string_view>("Bearer nobody-has-this"),
        std::optional<absl::string_view>("Bearer ")}) {
    EXPECT_EQ(d->AuthenticateHeader(header).status().code(), absl::StatusCode::kUnauthenticated)
        << header.value_or("(none)");
  }
}

TEST_F(TenantDirectoryTest, OnlyTheAdminTokenPassesRequireAdmin) {
  auto d = *Load("tenant 1 tenant-one-token\nadmin the-admin-token\n");
  EXPECT_EQ(TenantDirectory::RequireAdmin(d->AuthenticateHeader("Bearer tenant-one-token"))
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(TenantDirectory::RequireAdmin(d->AuthenticateHeader("Bearer the-admin-token")).ok());
  EXPECT_EQ(TenantDirectory::RequireAdmin(d->AuthenticateHeader(std::nullopt)).status().code(),
            absl::StatusCode::kUnauthenticated)
      << "an unauthenticated caller stays unauthenticated";
}

TEST(DevelopmentModeTest, EveryCallerIsTenantZeroAndAdmin) {
  auto d = TenantDirectory::DevelopmentMode();
  EXPECT_TRUE(d->development_mode());
  auto caller = d->AuthenticateHeader(std::nullopt);
  ASSERT_TRUE(caller.ok());
  EXPECT_EQ(caller->tenant, 0u);
  EXPECT_TRUE(caller->admin);
}

}  // namespace
}  // namespace mk::server
