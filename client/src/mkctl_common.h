// mkctl's shared pieces: each command's typed flags (a spec table per command; values parse
// with Abseil's flag parsers, integers are range-checked, nothing is truncated), the connection
// flags every command accepts (the token: --token, else --token_file, else $MK_TOKEN), help,
// --version and the exit codes (0 ok, 1 the call failed, 2 a usage error).
#ifndef MK_CLIENT_SRC_MKCTL_COMMON_H_
#define MK_CLIENT_SRC_MKCTL_COMMON_H_

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mk/client/client.h"

namespace mk::mkctl {

inline constexpr int kExitFailed = 1;  // the command ran and failed (an RPC error, ...)
inline constexpr int kExitUsage = 2;   // bad flags; nothing was sent

// The program's version (`mkctl --version`).
const char* Version();

struct FlagSpec {
  enum class Kind { kString, kPath, kBool, kUint, kUintList, kDuration, kChoice };
  std::string name;
  Kind kind = Kind::kString;
  // Parsed like a given value. Empty: none, and the flag is absent unless given (a list is
  // empty).
  std::string default_value;
  std::string help;
  uint64_t min = 0;  // kUint and each kUintList element: the inclusive range
  uint64_t max = std::numeric_limits<uint64_t>::max();
  size_t max_items = std::numeric_limits<size_t>::max();  // kUintList
  bool positive = false;                                  // kDuration: > 0, else >= 0
  std::vector<std::string> choices;                       // kChoice
};

// A string that must not be empty: --name=VALUE or --name VALUE.
FlagSpec StringFlag(std::string name, std::string default_value, std::string help);
// A file name that must not be empty ("--register needs a path").
FlagSpec PathFlag(std::string name, std::string help);
// --name, --noname, --name=true|false (also 1|0, yes|no).
FlagSpec BoolFlag(std::string name, bool default_value, std::string help);
// A decimal (or 0x hex) integer in [min, max].
FlagSpec UintFlag(std::string name, std::string default_value, uint64_t min, uint64_t max,
                  std::string help);
// Comma-separated integers, each in [0, max], at most max_items of them.
FlagSpec UintListFlag(std::string name, uint64_t max, size_t max_items, std::string help);
// A finite absl duration (250ms, 2s, 1m30s) >= 0, or > 0 when `positive`.
FlagSpec DurationFlag(std::string name, std::string default_value, bool positive, std::string help);
FlagSpec ChoiceFlag(std::string name, std::string default_value, std::vector<std::string> choices,
                    std::string help);

// The parsed flags of one command, every value checked against its spec.
class Args {
 public:
  // INVALID_ARGUMENT naming the flag, the value and what is allowed, for an unknown flag, a
  // positional argument, a missing value or a value its spec refuses.
  static absl::StatusOr<Args> Parse(const std::vector<std::string>& argv,
                                    const std::vector<FlagSpec>& specs);
  bool help() const { return help_; }
  bool version() const { return version_; }
  // Given, or with a default.
  bool Has(const std::string& name) const { return values_.count(name) != 0; }
  // "" when absent.
  std::string String(const std::string& name) const;
  bool Bool(const std::string& name) const;
  uint64_t Uint(const std::string& name) const;
  absl::Duration Duration(const std::string& name) const;
  const std::vector<uint64_t>& UintList(const std::string& name) const;
  // For a list whose spec's max fits 32 bits.
  std::vector<uint32_t> Uint32List(const std::string& name) const;
  // The connection flags, the token resolved (set by ParseCommand).
  const client::ClientOptions& client_options() const { return client_options_; }
  void set_client_options(client::ClientOptions options) { client_options_ = std::move(options); }

 private:
  using Value = std::variant<std::string, bool, uint64_t, absl::Duration, std::vector<uint64_t>>;
  template <typename T>
  const T& Get(const std::string& name) const;

  std::map<std::string, Value> values_;
  bool help_ = false;
  bool version_ = false;
  client::ClientOptions client_options_;
};

// The client options of the connection flags: the token is --token if given, else the first
// line of --token_file (trailing whitespace and CR stripped), else $MK_TOKEN, else none.
absl::StatusOr<client::ClientOptions> ClientOptionsFromArgs(const Args& args);

// Parses a command's flags (its own `specs` plus the connection flags). On --help or --version
// prints it and returns nullopt with *exit_code 0; on a usage error prints it and returns
// nullopt with *exit_code 2.
std::optional<Args> ParseCommand(const std::string& command, const std::string& summary,
                                 std::vector<FlagSpec> specs, const std::vector<std::string>& argv,
                                 int* exit_code);

absl::StatusOr<std::unique_ptr<client::Client>> Connect(const Args& args);

// Prints "mkctl: <message>" to stderr; returns kExitFailed / kExitUsage.
int Fail(const absl::Status& status);
int UsageError(absl::string_view message);

int RunBench(const std::vector<std::string>& argv);
int RunTop(const std::vector<std::string>& argv);
int RunSoak(const std::vector<std::string>& argv);
int RunBuffer(const std::vector<std::string>& argv);

}  // namespace mk::mkctl

#endif  // MK_CLIENT_SRC_MKCTL_COMMON_H_
