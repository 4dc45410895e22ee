#include "auth.h"

#include <grpcpp/server_context.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace mk::server {

namespace {

// Compares in time that depends only on the lengths, never on where the first difference is.
bool TokensEqual(absl::string_view expected, absl::string_view presented) {
  unsigned char diff = expected.size() == presented.size() ? 0 : 1;
  const size_t n = std::min(expected.size(), presented.size());
  for (size_t i = 0; i < n; ++i) {
    diff |= static_cast<unsigned char>(expected[i] ^ presented[i]);
  }
  return diff == 0;
}

}  // namespace

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
  std::stringstream contents;
  contents << in.rdbuf();
  return Parse(contents.str(), path, max_tenants);
}

absl::StatusOr<std::unique_ptr<TenantDirectory>> TenantDirectory::Parse(absl::string_view contents,
                                                                        absl::string_view name,
                                                                        uint32_t max_tenants) {
  auto d = std::unique_ptr<TenantDirectory>(new TenantDirectory());
  int number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++number;
    absl::string_view text = line;
    if (size_t hash = text.find('#'); hash != absl::string_view::npos) text = text.substr(0, hash);
    // Spaces, tabs and a CR (a file written on Windows) all separate fields: a token never
    // silently ends in '\r'.
    std::vector<absl::string_view> f =
        absl::StrSplit(text, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (f.empty()) continue;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth: ", name, ":", number, ": ", why,
                       "; expected 'tenant <id> <token>', 'admin <token>' or "
                       "'cert <id|admin> <certificate name>'"));
    };
    if (f[0] == "cert" && f.size() == 3) {
      uint32_t id = 0;
      if (f[1] != "admin" && (!absl::SimpleAtoi(f[1], &id) || id >= max_tenants)) {
        return bad(absl::StrCat("cert binds '", f[1], "', which is neither 'admin' nor a ",
                                "tenant id 0..", max_tenants - 1));
      }
      d->bound_names_[f[1] == "admin" ? std::string("admin") : absl::StrCat(id)].emplace_back(f[2]);
      continue;
    }
    Caller caller;
    std::string token;
    if (f[0] == "admin" && f.size() == 2) {
      caller.admin = true;
      caller.is_tenant = false;
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
    for (char c : token) {
      if (c < 0x21 || c > 0x7e) return bad("token has a character that is not printable ASCII");
    }
    for (const Entry& e : d->entries_) {
      if (e.token == token) return bad("token used twice");
    }
    d->entries_.push_back(Entry{std::move(token), caller});
  }
  return d;
}

absl::StatusOr<Caller> TenantDirectory::Authenticate(
    const grpc::CallbackServerContext& context) const {
  if (development_mode_) return Caller{0, true};
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  absl::StatusOr<Caller> caller =
      it == metadata.end()
          ? AuthenticateHeader(std::nullopt)
          : AuthenticateHeader(absl::string_view(it->second.data(), it->second.size()));
  if (!caller.ok() || bound_names_.empty()) return caller;
  std::vector<std::string> peer_names;
  if (std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
      auth != nullptr && auth->IsPeerAuthenticated()) {
    for (const char* property : {"x509_common_name", "x509_subject_alternative_name"}) {
      for (const grpc::string_ref& value : auth->FindPropertyValues(property)) {
        peer_names.emplace_back(value.data(), value.size());
      }
    }
  }
  if (absl::Status s = CheckCertificate(*caller, peer_names); !s.ok()) return s;
  return caller;
}

absl::Status TenantDirectory::CheckCertificate(const Caller& caller,
                                               const std::vector<std::string>& peer_names) const {
  const std::string key = caller.is_tenant ? absl::StrCat(caller.tenant) : std::string("admin");
  auto bound = bound_names_.find(key);
  if (bound == bound_names_.end()) return absl::OkStatus();
  for (const std::string& name : bound->second) {
    if (std::find(peer_names.begin(), peer_names.end(), name) != peer_names.end()) {
      return absl::OkStatus();
    }
  }
  const std::string who = caller.is_tenant ? absl::StrCat("tenant ", caller.tenant) : "the admin";
  return absl::PermissionDeniedError(absl::StrCat(
      "auth: ", who, "'s token is bound to a client certificate named ",
      absl::StrJoin(bound->second, " or "), " (cert lines of the tenants file); this call ",
      peer_names.empty() ? "presented no verified client certificate"
                         : absl::StrCat("presented one named ", absl::StrJoin(peer_names, ", "))));
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
  const Entry* found = nullptr;
  for (const Entry& e : entries_) {
    if (TokensEqual(e.token, value)) found = &e;
  }
  if (found == nullptr) return absl::UnauthenticatedError("auth: unknown bearer token");
  return found->caller;
}

absl::StatusOr<Caller> TenantDirectory::AuthenticateTenant(
    const grpc::CallbackServerContext& context) const {
  return RequireTenant(Authenticate(context));
}

absl::StatusOr<Caller> TenantDirectory::RequireTenant(absl::StatusOr<Caller> caller) {
  if (!caller.ok()) return caller;
  if (!caller->is_tenant) {
    return absl::PermissionDeniedError(
        "auth: the admin token names no tenant; data calls need a tenant token (a "
        "'tenant <id> <token>' entry)");
  }
  return caller;
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
