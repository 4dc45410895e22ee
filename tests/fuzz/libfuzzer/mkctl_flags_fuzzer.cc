// libFuzzer target: mkctl's typed flag parser (client/src/mkctl_common.h: Args::Parse), which
// every mkctl command runs over its command line before anything is sent.
//
// Input: the command line, arguments separated by NUL bytes (dict/mkctl_flags.dict: the flag
// names, duration units, hex and boolean spellings), parsed against a spec table with every
// kind of flag mkctl declares (the ranges of publish, poll, bench and resources).
// Properties:
// - an accepted command line gives every flag a value its spec allows: integers in their
//   inclusive range, lists of at most max_items in-range values, finite durations within
//   0..365 days (> 0 when positive), one of a choice's values, non-empty strings and paths;
//   defaults are present, flags without one absent unless given; each value reads back through
//   its typed getter (a wrong type would abort);
// - the canonical form of the parsed values (--name=value, decimal integers, absl's duration
//   format) parses again to the same values: parse(format(parse(x))) == parse(x);
// - a refused command line is INVALID_ARGUMENT naming the argument or the flag.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "fuzz/libfuzzer/fuzz_support.h"
#include "mkctl_common.h"

namespace mk::mkctl {
namespace {

using Kind = FlagSpec::Kind;

constexpr uint64_t kMaxU32 = std::numeric_limits<uint32_t>::max();
constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();
const absl::Duration kMaxDuration = absl::Hours(24 * 365);

// Built once: the table is the harness's, not the parser's, cost.
const std::vector<FlagSpec>& Specs() {
  static const auto* const specs = new std::vector<FlagSpec>{
      UintFlag("opcode", "0", 0, kMaxU32, "opcode"),
      UintListFlag("args", kMaxU32, 12, "argument words"),
      UintFlag("priority", "2", 0, 4, "priority"),
      UintFlag("count", "1", 1, 1 << 20, "copies"),
      DurationFlag("wait", "0s", false, "wait"),
      DurationFlag("duration", "5s", true, "run time"),
      UintListFlag("tickets", kMaxU64, 1 << 20, "tickets"),
      ChoiceFlag("mode", "closed", {"closed", "open", "suite"}, "mode"),
      BoolFlag("shared", false, "shared"),
      UintFlag("offset", "0", 0, kMaxU64, "offset"),
      UintFlag("evict", "", 0, kMaxU32, "no default"),
      PathFlag("register", "a path"),
      StringFlag("target", "127.0.0.1:50051", "address"),
      StringFlag("token", "", "no default"),
  };
  return *specs;
}

// The value of a present flag in canonical form, checking it against its spec on the way.
std::string CheckedValue(const Args& args, const FlagSpec& s) {
  switch (s.kind) {
    case Kind::kString:
    case Kind::kPath: {
      std::string v = args.String(s.name);
      MK_FUZZ_CHECK(!v.empty(), "--", s.name, " is empty");
      return v;
    }
    case Kind::kChoice: {
      std::string v = args.String(s.name);
      MK_FUZZ_CHECK(std::find(s.choices.begin(), s.choices.end(), v) != s.choices.end(), "--",
                    s.name, "=", v, " is no choice");
      return v;
    }
    case Kind::kBool:
      return args.Bool(s.name) ? "true" : "false";
    case Kind::kUint: {
      const uint64_t v = args.Uint(s.name);
      MK_FUZZ_CHECK(v >= s.min && v <= s.max, "--", s.name, "=", v, " out of ", s.min, "..", s.max);
      return absl::StrCat(v);
    }
    case Kind::kUintList: {
      const std::vector<uint64_t>& v = args.UintList(s.name);
      MK_FUZZ_CHECK(v.size() <= s.max_items, "--", s.name, ": ", v.size(), " items");
      for (uint64_t x : v) MK_FUZZ_CHECK(x >= s.min && x <= s.max, "--", s.name, " item ", x);
      if (s.max <= kMaxU32) {
        const std::vector<uint32_t> narrow = args.Uint32List(s.name);
        MK_FUZZ_CHECK(std::equal(v.begin(), v.end(), narrow.begin(), narrow.end()), "narrowed");
      }
      return absl::StrJoin(v, ",");
    }
    case Kind::kDuration: {
      const absl::Duration d = args.Duration(s.name);
      MK_FUZZ_CHECK(d >= absl::ZeroDuration() && d <= kMaxDuration, "--", s.name, "=",
                    absl::FormatDuration(d));
      MK_FUZZ_CHECK(!s.positive || d > absl::ZeroDuration(), "--", s.name, " is not positive");
      return absl::FormatDuration(d);
    }
  }
  return "";
}

void Fuzz(fuzz::Input& in) {
  std::vector<std::string> argv;
  for (absl::string_view arg : absl::StrSplit(in.Rest(), '\0')) {
    if (argv.size() == 24) break;
    argv.emplace_back(arg);
  }
  const std::vector<FlagSpec>& specs = Specs();
  const absl::StatusOr<Args> args = Args::Parse(argv, specs);
  if (!args.ok()) {
    const absl::string_view m = args.status().message();
    MK_FUZZ_CHECK(absl::IsInvalidArgument(args.status()) &&
                      (absl::StartsWith(m, "--") || absl::StartsWith(m, "unknown flag --") ||
                       absl::StartsWith(m, "unexpected argument '")),
                  args.status().ToString());
    return;
  }
  std::vector<std::string> canonical;
  std::vector<std::string> values;
  for (const FlagSpec& s : specs) {
    const bool defaulted = !s.default_value.empty() || s.kind == Kind::kUintList;
    MK_FUZZ_CHECK(!defaulted || args->Has(s.name), "--", s.name, " lost its default");
    if (!args->Has(s.name)) {
      values.emplace_back("<absent>");
      continue;
    }
    values.push_back(CheckedValue(*args, s));
    canonical.push_back(absl::StrCat("--", s.name, "=", values.back()));
  }
  if (args->help()) canonical.emplace_back("--help");
  if (args->version()) canonical.emplace_back("--version");

  const absl::StatusOr<Args> again = Args::Parse(canonical, specs);
  MK_FUZZ_CHECK(again.ok(), again.status().ToString(), " for the canonical form ",
                absl::StrJoin(canonical, " "));
  MK_FUZZ_CHECK(again->help() == args->help() && again->version() == args->version(), "help");
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string v = again->Has(specs[i].name) ? CheckedValue(*again, specs[i]) : "<absent>";
    MK_FUZZ_CHECK(v == values[i], "--", specs[i].name, ": ", values[i], " became ", v);
  }
}

}  // namespace
}  // namespace mk::mkctl

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mk::fuzz::Input in(data, size);
  mk::mkctl::Fuzz(in);
  return 0;
}
