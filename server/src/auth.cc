#include "auth.h"

#include <grpcpp/server_context.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace mk::server {

std::unique_ptr<TenantDirectory> TenantDirectory::DevelopmentMode() {
  auto d = std::unique_ptr<TenantDirectory>(new TenantDirectory());
  d->development_mode_ = true;
  return d;
}

absl::StatusOr<std::unique_ptr<TenantDirectory>> TenantDirectory::Load(const std::string& path,
                                                                       uint32_t max_tenants) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("auth: cannot read tenants file ", path, "; check --tenants_file"));
  }
  auto d = std::unique_ptr<TenantDirectory>(new TenantDirectory());
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    absl::string_view text = line;
    if (size_t hash = text.find('#'); hash != absl::string_view::npos) text = text.substr(0, hash);
    std::vector<absl::string_view> f = absl::StrSplit(text, ' ', absl::SkipWhitespace());
    if (f.empty()) continue;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("auth: ", path, ":", number, ": ", why,
                                                     "; expected 'tenant <id> <token>' or "
                                                     "'admin <token>'"));
    };
    Caller caller;
    std::string token;
    if (f[0] == "admin" && f.size() == 2) {
      caller.admin = true;
      token = std::string{f[1]};
    } else if (f[0] == "tenant" && f.size() == 3) {
      if (!absl::SimpleAtoi(f[1], &caller.tenant) || caller.tenant >= max_tenants) {
        return bad(absl::StrCat("tenant id '", f[1], "' is not 0..", max_tenants - 1));
      }
      token = std::string{f[2]};
    } else {
      return bad("malformed entry");
    }
    if (token.size() < 8) return bad("token shorter than 8 characters");
    if (!d->tenants_.emplace(token, caller).second) return bad("token used twice");
  }
  return d;
}

absl::StatusOr<Caller> TenantDirectory::Authenticate(
    const grpc::CallbackServerContext& context) const {
  if (development_mode_) return Caller{0, true};
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return AuthenticateHeader(std::nullopt);
  return AuthenticateHeader(absl::string_view(it->second.data(), it->second.size()));
}

absl::StatusOr<Caller> TenantDirectory::AuthenticateHeader(
    std::optional<absl::string_view> authorization) const {
  if (development_mode_) return Caller{0, true};
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError(
        "auth: missing 'authorization: Bearer <token>' metadata; send the token from your "
        "tenants file entry");
  }
  absl::string_view value = *authorization;
  if (!absl::ConsumePrefix(&value, "Bearer ")) {
    return absl::UnauthenticatedError("auth: authorization metadata must be 'Bearer <token>'");
  }
  auto caller = tenants_.find(std::string{value});
  if (caller == tenants_.end()) {
    return absl::UnauthenticatedError("auth: unknown bearer token");
  }
  return caller->second;
}

absl::StatusOr<Caller> TenantDirectory::AuthenticateAdmin(
    const grpc::CallbackServerContext& context) const {
  return RequireAdmin(Authenticate(context));
}

absl::StatusOr<Caller> TenantDirectory::RequireAdmin(absl::StatusOr<Caller> caller) {
  if (!caller.ok()) return caller;
  if (!caller->admin) {
    return absl::PermissionDeniedError(
        "auth: the Admin service needs the admin token (an 'admin <token>' entry)");
  }
  return caller;
}

}  // namespace mk::server
