#include "mkctl_common.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <system_error>

#include "absl/flags/marshalling.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

#ifndef MK_VERSION
#define MK_VERSION "0.1.0"
#endif

namespace mk::mkctl {
namespace {

using Kind = FlagSpec::Kind;

constexpr absl::Duration kMaxDuration = absl::Hours(24 * 365);

FlagSpec Spec(std::string name, Kind kind, std::string default_value, std::string help) {
  FlagSpec s;
  s.name = std::move(name);
  s.kind = kind;
  s.default_value = std::move(default_value);
  s.help = std::move(help);
  return s;
}

std::string Range(uint64_t min, uint64_t max) { return absl::StrCat(min, "..", max); }

// Text an integer parser would take but for its size: [+-] then digits or 0x and hex digits.
bool LooksLikeInteger(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) text.remove_prefix(1);
  const bool hex = absl::ConsumePrefix(&text, "0x") || absl::ConsumePrefix(&text, "0X");
  if (text.empty()) return false;
  for (char c : text) {
    if (!(hex ? absl::ascii_isxdigit(c) : absl::ascii_isdigit(c))) return false;
  }
  return true;
}

// `what` names the value in messages: "--opcode=4294967298" or "--args=1,x: 'x'".
absl::StatusOr<uint64_t> ParseUint(absl::string_view text, uint64_t min, uint64_t max,
                                   const std::string& what) {
  uint64_t v = 0;
  std::string error;
  if (!absl::ParseFlag(text, &v, &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, LooksLikeInteger(text) ? " is out of range" : " is not an integer",
                     " (allowed: ", Range(min, max), ")"));
  }
  if (v < min || v > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is out of range (allowed: ", Range(min, max), ")"));
  }
  return v;
}

// A value for `spec` from `text`, or INVALID_ARGUMENT saying what is wrong with it.
absl::StatusOr<std::variant<std::string, bool, uint64_t, absl::Duration, std::vector<uint64_t>>>
ParseValue(const FlagSpec& spec, absl::string_view text) {
  const std::string what = absl::StrCat("--", spec.name, "=", text);
  std::string error;
  switch (spec.kind) {
    case Kind::kString:
    case Kind::kPath:
      if (text.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", spec.name, " needs a ", spec.kind == Kind::kPath ? "path" : "value"));
      }
      return std::string{text};
    case Kind::kBool: {
      bool b = false;
      if (!absl::ParseFlag(text, &b, &error)) {
        return absl::InvalidArgumentError(absl::StrCat(what, " is not a boolean (true or false)"));
      }
      return b;
    }
    case Kind::kUint: {
      auto v = ParseUint(text, spec.min, spec.max, what);
      if (!v.ok()) return v.status();
      return *v;
    }
    case Kind::kUintList: {
      std::vector<uint64_t> out;
      for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
        auto v = ParseUint(part, spec.min, spec.max, absl::StrCat(what, ": '", part, "'"));
        if (!v.ok()) return v.status();
        out.push_back(*v);
      }
      if (out.size() > spec.max_items) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": ", out.size(), " values; at most ", spec.max_items));
      }
      return out;
    }
    case Kind::kDuration: {
      absl::Duration d;
      if (!absl::ParseFlag(text, &d, &error)) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, " is not a duration (e.g. 250ms, 2s, 1m30s)"));
      }
      if (d == absl::InfiniteDuration() || d == -absl::InfiniteDuration()) {
        return absl::InvalidArgumentError(absl::StrCat(what, " is not finite"));
      }
      if (spec.positive && d <= absl::ZeroDuration()) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, " must be greater than 0 (e.g. 500ms, 2s)"));
      }
      if (d < absl::ZeroDuration()) {
        return absl::InvalidArgumentError(absl::StrCat(what, " is negative (allowed: >= 0)"));
      }
      if (d > kMaxDuration) {  // beyond it a deadline on the steady clock could overflow
        return absl::InvalidArgumentError(absl::StrCat(what, " is out of range (allowed: up to ",
                                                       absl::FormatDuration(kMaxDuration), ")"));
      }
      return d;
    }
    case Kind::kChoice:
      for (const std::string& c : spec.choices) {
        if (text == c) return std::string{text};
      }
      return absl::InvalidArgumentError(
          absl::StrCat(what, " is not one of ", absl::StrJoin(spec.choices, ", ")));
  }
  return absl::InternalError("unknown flag kind");
}

// The next argument is the value of `--name VALUE` unless it is itself a flag.
bool LooksLikeFlag(absl::string_view arg) {
  return arg.size() > 1 && arg[0] == '-' && !absl::ascii_isdigit(arg[1]);
}

std::string Metavar(const FlagSpec& s) {
  switch (s.kind) {
    case Kind::kString:
      return "=VALUE";
    case Kind::kPath:
      return "=PATH";
    case Kind::kBool:
      return "[=true|false]";
    case Kind::kUint:
      return "=N";
    case Kind::kUintList:
      return "=N,N,...";
    case Kind::kDuration:
      return "=DURATION";
    case Kind::kChoice:
      return absl::StrCat("=", absl::StrJoin(s.choices, "|"));
  }
  return "";
}

std::vector<FlagSpec> WithConnectionFlags(std::vector<FlagSpec> own) {
  own.push_back(StringFlag("target", "127.0.0.1:50051", "megakerneld address host:port"));
  own.push_back(StringFlag("token", "", "bearer token; else --token_file, else $MK_TOKEN"));
  own.push_back(PathFlag("token_file", "file whose first line is the token"));
  own.push_back(PathFlag("tls_ca_file", "PEM roots; enables TLS"));
  own.push_back(PathFlag("tls_cert_file", "PEM client certificate (mutual TLS)"));
  own.push_back(PathFlag("tls_key_file", "PEM client key (mutual TLS)"));
  own.push_back(StringFlag("tls_server_name", "", "name to verify in the server certificate"));
  return own;
}

void PrintHelp(const std::string& command, const std::string& summary,
               const std::vector<FlagSpec>& specs) {
  std::printf("usage: mkctl %s [flags]\n%s\n\nflags:\n", command.c_str(), summary.c_str());
  for (const FlagSpec& s : specs) {
    std::vector<std::string> notes;
    if (s.kind == Kind::kUint ||
        (s.kind == Kind::kUintList && s.max != std::numeric_limits<uint64_t>::max())) {
      notes.push_back(absl::StrCat("range ", Range(s.min, s.max)));
    }
    if (!s.default_value.empty()) notes.push_back(absl::StrCat("default ", s.default_value));
    std::printf("  --%-28s %s\n", absl::StrCat(s.name, Metavar(s)).c_str(), s.help.c_str());
    if (!notes.empty()) std::printf("%33s%s\n", "", absl::StrJoin(notes, ", ").c_str());
  }
  std::printf(
      "  --help                         this help\n"
      "  --version                      print the version\n\n"
      "The token is --token if given, else the first line of --token_file (trailing whitespace\n"
      "stripped), else the MK_TOKEN environment variable; with none, no token is sent.\n"
      "Exit status: 0 ok, 1 the call failed, 2 bad flags.\n");
}

}  // namespace

const char* Version() { return MK_VERSION; }

FlagSpec StringFlag(std::string name, std::string default_value, std::string help) {
  return Spec(std::move(name), Kind::kString, std::move(default_value), std::move(help));
}

FlagSpec PathFlag(std::string name, std::string help) {
  return Spec(std::move(name), Kind::kPath, "", std::move(help));
}

FlagSpec BoolFlag(std::string name, bool default_value, std::string help) {
  return Spec(std::move(name), Kind::kBool, default_value ? "true" : "false", std::move(help));
}

FlagSpec UintFlag(std::string name, std::string default_value, uint64_t min, uint64_t max,
                  std::string help) {
  FlagSpec s = Spec(std::move(name), Kind::kUint, std::move(default_value), std::move(help));
  s.min = min;
  s.max = max;
  return s;
}

FlagSpec UintListFlag(std::string name, uint64_t max, size_t max_items, std::string help) {
  FlagSpec s = Spec(std::move(name), Kind::kUintList, "", std::move(help));
  s.max = max;
  s.max_items = max_items;
  return s;
}

FlagSpec DurationFlag(std::string name, std::string default_value, bool positive,
                      std::string help) {
  FlagSpec s = Spec(std::move(name), Kind::kDuration, std::move(default_value), std::move(help));
  s.positive = positive;
  return s;
}

FlagSpec ChoiceFlag(std::string name, std::string default_value, std::vector<std::string> choices,
                    std::string help) {
  FlagSpec s = Spec(std::move(name), Kind::kChoice, std::move(default_value), std::move(help));
  s.choices = std::move(choices);
  return s;
}

absl::StatusOr<Args> Args::Parse(const std::vector<std::string>& argv,
                                 const std::vector<FlagSpec>& specs) {
  Args args;
  std::map<std::string, const FlagSpec*> by_name;
  for (const FlagSpec& s : specs) {
    by_name[s.name] = &s;
    if (s.default_value.empty() && s.kind != Kind::kUintList) continue;  // absent unless given
    auto v = ParseValue(s, s.default_value);
    if (!v.ok()) return absl::InternalError(absl::StrCat("bad default: ", v.status().message()));
    args.values_[s.name] = *std::move(v);
  }
  for (size_t i = 0; i < argv.size(); ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") {  // the end of the flags; mkctl takes no positional arguments
      if (i + 1 < argv.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected argument '", argv[i + 1], "'; flags are --name=value"));
      }
      break;
    }
    if (!LooksLikeFlag(arg)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", arg, "'; flags are --name=value"));
    }
    absl::ConsumePrefix(&arg, "-");
    absl::ConsumePrefix(&arg, "-");
    const size_t eq = arg.find('=');
    const std::string name(arg.substr(0, eq));
    const bool has_value = eq != absl::string_view::npos;
    const absl::string_view text = has_value ? arg.substr(eq + 1) : absl::string_view();
    if ((name == "help" || name == "h") && !has_value) {
      args.help_ = true;
      continue;
    }
    if (name == "version" && !has_value) {
      args.version_ = true;
      continue;
    }
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      // --noNAME turns a boolean flag off.
      auto negated = absl::StartsWith(name, "no") ? by_name.find(name.substr(2)) : by_name.end();
      if (negated != by_name.end() && negated->second->kind == Kind::kBool && !has_value) {
        args.values_[negated->first] = false;
        continue;
      }
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    const FlagSpec& spec = *it->second;
    std::string value(text);
    if (spec.kind == Kind::kBool) {
      if (!has_value) value = "true";  // --shared; a boolean never takes the next argument
    } else if (!has_value) {
      if (i + 1 >= argv.size() || LooksLikeFlag(argv[i + 1])) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " needs a ", spec.kind == Kind::kPath ? "path" : "value"));
      }
      value = argv[++i];  // --name VALUE
    }
    auto v = ParseValue(spec, value);
    if (!v.ok()) return v.status();
    args.values_[name] = *std::move(v);
  }
  return args;
}

template <typename T>
const T& Args::Get(const std::string& name) const {
  auto it = values_.find(name);
  const T* v = it == values_.end() ? nullptr : std::get_if<T>(&it->second);
  if (v == nullptr) {  // a programming error: the spec table and the reader disagree
    std::fprintf(stderr, "mkctl: internal error: flag --%s read absent or as another type\n",
                 name.c_str());
    std::abort();
  }
  return *v;
}

std::string Args::String(const std::string& name) const {
  return Has(name) ? Get<std::string>(name) : "";
}
bool Args::Bool(const std::string& name) const { return Get<bool>(name); }
uint64_t Args::Uint(const std::string& name) const { return Get<uint64_t>(name); }
absl::Duration Args::Duration(const std::string& name) const { return Get<absl::Duration>(name); }
const std::vector<uint64_t>& Args::UintList(const std::string& name) const {
  return Get<std::vector<uint64_t>>(name);
}
std::vector<uint32_t> Args::Uint32List(const std::string& name) const {
  const std::vector<uint64_t>& wide = UintList(name);
  std::vector<uint32_t> out;
  out.reserve(wide.size());
  for (uint64_t v : wide) out.push_back(static_cast<uint32_t>(v));  // the spec checked the range
  return out;
}

absl::StatusOr<client::ClientOptions> ClientOptionsFromArgs(const Args& args) {
  client::ClientOptions o;
  o.target = args.String("target");
  o.tls_ca_file = args.String("tls_ca_file");
  o.tls_cert_file = args.String("tls_cert_file");
  o.tls_key_file = args.String("tls_key_file");
  o.tls_server_name = args.String("tls_server_name");
  if (args.Has("token")) {
    o.token = args.String("token");
  } else if (args.Has("token_file")) {
    const std::string path = args.String("token_file");
    std::ifstream in(path);
    if (!in) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token_file=", path, ": cannot open (",
                       std::error_code(errno, std::generic_category()).message(), ")"));
    }
    std::getline(in, o.token);
    if (in.bad()) {
      return absl::InvalidArgumentError(absl::StrCat("--token_file=", path, ": cannot read"));
    }
    absl::StripTrailingAsciiWhitespace(&o.token);  // a newline, a CR of a CRLF file
    if (o.token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token_file=", path, ": the first line is empty; it must hold the token"));
    }
  } else {
    // Read once, on the main thread before any other starts.
    const char* env = std::getenv("MK_TOKEN");  // NOLINT(concurrency-mt-unsafe)
    if (env != nullptr) o.token = env;
    absl::StripTrailingAsciiWhitespace(&o.token);
  }
  return o;
}

std::optional<Args> ParseCommand(const std::string& command, const std::string& summary,
                                 std::vector<FlagSpec> specs, const std::vector<std::string>& argv,
                                 int* exit_code) {
  specs = WithConnectionFlags(std::move(specs));
  auto args = Args::Parse(argv, specs);
  if (!args.ok()) {
    *exit_code =
        UsageError(absl::StrCat(args.status().message(), " (see 'mkctl ", command, " --help')"));
    return std::nullopt;
  }
  if (args->help() || args->version()) {
    if (args->help()) {
      PrintHelp(command, summary, specs);
    } else {
      std::printf("mkctl %s\n", Version());
    }
    *exit_code = 0;
    return std::nullopt;
  }
  auto options = ClientOptionsFromArgs(*args);
  if (!options.ok()) {
    *exit_code = UsageError(options.status().message());
    return std::nullopt;
  }
  args->set_client_options(*std::move(options));
  *exit_code = 0;
  return *std::move(args);
}

absl::StatusOr<std::unique_ptr<client::Client>> Connect(const Args& args) {
  return client::Client::Create(args.client_options());
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "mkctl: %s\n", status.ToString().c_str());
  return kExitFailed;
}

int UsageError(absl::string_view message) {
  std::fprintf(stderr, "mkctl: %.*s\n", static_cast<int>(message.size()), message.data());
  return kExitUsage;
}

}  // namespace mk::mkctl
