#include "mkctl_common.h"

#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mk::mkctl {

absl::StatusOr<Args> Args::Parse(const std::vector<std::string>& argv,
                                 const std::vector<FlagSpec>& specs) {
  Args args;
  for (const FlagSpec& s : specs) args.values_[s.name] = s.default_value;
  for (const std::string& a : argv) {
    if (a == "--help" || a == "-h") {
      args.help_ = true;
      continue;
    }
    if (!absl::StartsWith(a, "--")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", a, "'; flags are --name=value (see --help)"));
    }
    const size_t eq = a.find('=');
    const std::string name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    if (args.values_.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    args.values_[name] = eq == std::string::npos ? "true" : a.substr(eq + 1);
  }
  return args;
}

std::string Args::Get(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? "" : it->second;
}

absl::StatusOr<uint64_t> Args::GetUint(const std::string& name) const {
  uint64_t v;
  if (!absl::SimpleAtoi(Get(name), &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, "=", Get(name), " is not a non-negative integer"));
  }
  return v;
}

absl::StatusOr<absl::Duration> Args::GetDuration(const std::string& name) const {
  absl::Duration d;
  if (!absl::ParseDuration(Get(name), &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, "=", Get(name), " is not a duration (e.g. 250ms, 2s)"));
  }
  return d;
}

absl::StatusOr<std::vector<uint64_t>> Args::GetUint64List(const std::string& name) const {
  std::vector<uint64_t> out;
  for (absl::string_view part : absl::StrSplit(Get(name), ',', absl::SkipEmpty())) {
    uint64_t v;
    if (!absl::SimpleAtoi(part, &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, ": '", part, "' is not a non-negative integer"));
    }
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<std::vector<uint32_t>> Args::GetUintList(const std::string& name) const {
  auto wide = GetUint64List(name);
  if (!wide.ok()) return wide.status();
  std::vector<uint32_t> out;
  for (uint64_t v : *wide) {
    if (v > UINT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, ": ", v, " exceeds 32 bits"));
    }
    out.push_back(static_cast<uint32_t>(v));
  }
  return out;
}

std::vector<FlagSpec> WithConnectionFlags(std::vector<FlagSpec> own) {
  own.push_back({"target", "127.0.0.1:50051", "megakerneld address host:port"});
  own.push_back({"token", "", "bearer token (from the server's tenants file)"});
  own.push_back({"tls_ca_file", "", "PEM roots; enables TLS"});
  own.push_back({"tls_cert_file", "", "PEM client certificate (mutual TLS)"});
  own.push_back({"tls_key_file", "", "PEM client key (mutual TLS)"});
  own.push_back({"tls_server_name", "", "name to verify in the server certificate"});
  return own;
}

absl::StatusOr<std::unique_ptr<client::Client>> ConnectFromArgs(const Args& args) {
  client::ClientOptions o;
  o.target = args.Get("target");
  o.token = args.Get("token");
  o.tls_ca_file = args.Get("tls_ca_file");
  o.tls_cert_file = args.Get("tls_cert_file");
  o.tls_key_file = args.Get("tls_key_file");
  o.tls_server_name = args.Get("tls_server_name");
  return client::Client::Create(o);
}

void PrintHelp(const std::string& command, const std::string& summary,
               const std::vector<FlagSpec>& specs) {
  std::printf("usage: mkctl %s [flags]\n%s\n\nflags:\n", command.c_str(), summary.c_str());
  for (const FlagSpec& s : specs) {
    std::printf(
        "  --%-18s %s%s\n", s.name.c_str(), s.help.c_str(),
        s.default_value.empty() ? "" : absl::StrCat(" (default ", s.default_value, ")").c_str());
  }
}

}  // namespace mk::mkctl
