// libFuzzer target: the tenants file (server/src/auth.h: TenantDirectory::Parse, which Load
// runs over the file's contents; docs/security.md "Credentials"), bearer authentication and the
// client-certificate bindings of `cert` lines.
//
// Input: one byte for max_tenants (mostly 0..39, sometimes any value), then the file's text
// (dict/tenants_file.dict: the keywords, separators, comment and CR).
// Properties, against a reference reading of docs/security.md:
// - the file is accepted exactly when every entry is `tenant <id> <token>` with id below
//   max_tenants, `admin <token>` or `cert <id|admin> <name>`, every token at least 8 printable
//   ASCII characters and none used twice ('#' comments; spaces, tabs and CR separate fields); a
//   refusal names the first bad line ("auth: tenants.txt:<line>: ...");
// - every accepted token authenticates ("Bearer <token>") as its entry's caller (tenant id,
//   admin, names a tenant), RequireTenant and RequireAdmin agree with the entry, and anything
//   else (no header, no "Bearer " prefix, a token with a character more, a fuzzed header) is
//   UNAUTHENTICATED unless it is exactly another entry's header;
// - a caller some `cert` line binds passes CheckCertificate exactly when one of the names
//   presented is bound to it (PERMISSION_DENIED otherwise, also with no certificate); a caller
//   no line binds passes with any names; binds_certificates() says whether any line binds;
// - development mode makes every caller tenant 0 and admin.
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "auth.h"
#include "fuzz/libfuzzer/fuzz_support.h"

namespace mk::server {
namespace {

struct Entry {
  std::string token;
  Caller caller;
};

struct Expected {
  std::vector<Entry> entries;
  std::map<std::string, std::vector<std::string>> bound;  // "admin" or the tenant id -> names
  int bad_line = 0;                                       // 0: the file is valid
};

bool GoodToken(absl::string_view token) {
  if (token.size() < 8) return false;
  for (char c : token) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e) return false;
  }
  return true;
}

Expected Reference(absl::string_view text, uint32_t max_tenants) {
  Expected e;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = line.substr(0, line.find('#'));
    const std::vector<absl::string_view> f =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (f.empty()) continue;
    Entry entry;
    bool ok = false;
    if (f.size() == 3 && f[0] == "cert") {
      uint32_t id = 0;
      if (f[1] != "admin" && (!absl::SimpleAtoi(f[1], &id) || id >= max_tenants)) {
        e.bad_line = number;
        return e;
      }
      e.bound[f[1] == "admin" ? std::string("admin") : absl::StrCat(id)].emplace_back(f[2]);
      continue;
    }
    if (f.size() == 2 && f[0] == "admin") {
      entry = Entry{std::string{f[1]}, Caller{0, true, false}};
      ok = true;
    } else if (f.size() == 3 && f[0] == "tenant") {
      uint32_t id = 0;
      ok = absl::SimpleAtoi(f[1], &id) && id < max_tenants;
      entry = Entry{std::string{f[2]}, Caller{id, false, true}};
    }
    ok = ok && GoodToken(entry.token);
    for (const Entry& earlier : e.entries) ok = ok && earlier.token != entry.token;
    if (!ok) {
      e.bad_line = number;
      return e;
    }
    e.entries.push_back(std::move(entry));
  }
  return e;
}

bool SameCaller(const Caller& a, const Caller& b) {
  return a.tenant == b.tenant && a.admin == b.admin && a.is_tenant == b.is_tenant;
}

// The header `value` names `expected` (an entry's caller) or nobody.
void CheckHeader(const TenantDirectory& d, absl::string_view value,
                 const std::optional<Caller>& expected) {
  const absl::StatusOr<Caller> got = d.AuthenticateHeader(value);
  if (!expected) {
    MK_FUZZ_CHECK(absl::IsUnauthenticated(got.status()), "header '", value,
                  "': ", got.ok() ? "accepted" : got.status().ToString());
    return;
  }
  MK_FUZZ_CHECK(got.ok() && SameCaller(*got, *expected), "header '", value,
                "': ", got.status().ToString());
  const absl::StatusOr<Caller> tenant = TenantDirectory::RequireTenant(got);
  MK_FUZZ_CHECK(tenant.ok() == expected->is_tenant, tenant.status().ToString());
  const absl::StatusOr<Caller> admin = TenantDirectory::RequireAdmin(got);
  MK_FUZZ_CHECK(admin.ok() == expected->admin, admin.status().ToString());
  if (!tenant.ok()) MK_FUZZ_CHECK(absl::IsPermissionDenied(tenant.status()), "RequireTenant");
  if (!admin.ok()) MK_FUZZ_CHECK(absl::IsPermissionDenied(admin.status()), "RequireAdmin");
}

// Whose header `value` is, by the reference.
std::optional<Caller> Owner(const std::vector<Entry>& entries, absl::string_view value) {
  if (!absl::ConsumePrefix(&value, "Bearer ")) return std::nullopt;
  for (const Entry& e : entries) {
    if (e.token == value) return e.caller;
  }
  return std::nullopt;
}

std::string Key(const Caller& caller) {
  return caller.is_tenant ? absl::StrCat(caller.tenant) : std::string("admin");
}

void CheckCertificates(const TenantDirectory& dir, const Expected& expected) {
  MK_FUZZ_CHECK(dir.binds_certificates() == !expected.bound.empty(), "binds_certificates");
  std::vector<Caller> callers;
  for (const Entry& e : expected.entries) callers.push_back(e.caller);
  for (const auto& [key, names] : expected.bound) {  // bound callers without a token too
    Caller caller{0, true, false};
    uint32_t id = 0;
    if (key != "admin" && absl::SimpleAtoi(key, &id)) caller = Caller{id, false, true};
    callers.push_back(caller);
  }
  for (size_t i = 0; i < callers.size() && i < 48; ++i) {
    const Caller& caller = callers[i];
    const auto bound = expected.bound.find(Key(caller));
    const absl::Status none = dir.CheckCertificate(caller, {});
    MK_FUZZ_CHECK(none.ok() == (bound == expected.bound.end()), Key(caller), ": ", none.ToString());
    if (bound == expected.bound.end()) {
      MK_FUZZ_CHECK(dir.CheckCertificate(caller, {"any-name"}).ok(), "unbound ", Key(caller));
      continue;
    }
    MK_FUZZ_CHECK(absl::IsPermissionDenied(none), none.ToString());
    const std::vector<std::string>& names = bound->second;
    const absl::Status with = dir.CheckCertificate(caller, {"other", names.back()});
    MK_FUZZ_CHECK(with.ok(), Key(caller), " presenting ", names.back(), ": ", with.ToString());
    const std::string near = names.front() + "x";
    const bool near_bound = std::find(names.begin(), names.end(), near) != names.end();
    MK_FUZZ_CHECK(dir.CheckCertificate(caller, {near}).ok() == near_bound, Key(caller),
                  " presenting ", near);
  }
}

void Fuzz(fuzz::Input& in) {
  const uint32_t max_tenants = in.U8() < 240 ? in.Below(40) : in.U32();
  const absl::string_view text = in.Rest();
  const Expected expected = Reference(text, max_tenants);
  const absl::StatusOr<std::unique_ptr<TenantDirectory>> d =
      TenantDirectory::Parse(text, "tenants.txt", max_tenants);
  MK_FUZZ_CHECK(d.ok() == (expected.bad_line == 0), d.status().ToString(), " (reference: bad line ",
                expected.bad_line, ")");
  if (!d.ok()) {
    MK_FUZZ_CHECK(absl::IsInvalidArgument(d.status()) &&
                      absl::StartsWith(d.status().message(),
                                       absl::StrCat("auth: tenants.txt:", expected.bad_line, ": ")),
                  d.status().ToString(), " should name line ", expected.bad_line);
    return;
  }
  const TenantDirectory& dir = **d;
  MK_FUZZ_CHECK(!dir.development_mode(), "a file's directory in development mode");
  MK_FUZZ_CHECK(dir.tenant_count() == expected.entries.size(), dir.tenant_count(), " entries");
  const absl::StatusOr<Caller> none = dir.AuthenticateHeader(std::nullopt);
  MK_FUZZ_CHECK(absl::IsUnauthenticated(none.status()), "no header: ", none.status().ToString());
  for (size_t i = 0; i < expected.entries.size() && i < 32; ++i) {
    const Entry& e = expected.entries[i];
    CheckHeader(dir, absl::StrCat("Bearer ", e.token), e.caller);
    for (const std::string& other :
         {absl::StrCat("Bearer ", e.token, "!"), absl::StrCat("bearer ", e.token), e.token,
          absl::StrCat("Bearer  ", e.token), absl::StrCat("Bearer ", e.token.substr(1))}) {
      CheckHeader(dir, other, Owner(expected.entries, other));
    }
  }
  CheckCertificates(dir, expected);
  // A header made of the file's own bytes.
  const absl::string_view header = text.substr(0, 48);
  CheckHeader(dir, header, Owner(expected.entries, header));

  const absl::StatusOr<Caller> dev = TenantDirectory::DevelopmentMode()->AuthenticateHeader(header);
  MK_FUZZ_CHECK(dev.ok() && dev->tenant == 0 && dev->admin, "development mode");
}

}  // namespace
}  // namespace mk::server

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mk::fuzz::Input in(data, size);
  mk::server::Fuzz(in);
  return 0;
}
