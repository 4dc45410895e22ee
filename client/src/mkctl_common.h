// mkctl's shared pieces: a small `--key=value` parser with per-command help, and the client
// built from the connection flags every command accepts.
#ifndef MK_CLIENT_SRC_MKCTL_COMMON_H_
#define MK_CLIENT_SRC_MKCTL_COMMON_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mk/client/client.h"

namespace mk::mkctl {

struct FlagSpec {
  std::string name;
  std::string default_value;
  std::string help;
};

// Parsed `--key=value` arguments of one command, checked against its specs.
class Args {
 public:
  // INVALID_ARGUMENT for an unknown flag or a positional argument. `help` is set for --help.
  static absl::StatusOr<Args> Parse(const std::vector<std::string>& argv,
                                    const std::vector<FlagSpec>& specs);
  bool help() const { return help_; }
  std::string Get(const std::string& name) const;
  absl::StatusOr<uint64_t> GetUint(const std::string& name) const;
  absl::StatusOr<absl::Duration> GetDuration(const std::string& name) const;
  absl::StatusOr<std::vector<uint32_t>> GetUintList(const std::string& name) const;
  absl::StatusOr<std::vector<uint64_t>> GetUint64List(const std::string& name) const;

 private:
  std::map<std::string, std::string> values_;
  bool help_ = false;
};

// The connection flags (--target, --token, TLS files) merged into a command's own.
std::vector<FlagSpec> WithConnectionFlags(std::vector<FlagSpec> own);
absl::StatusOr<std::unique_ptr<client::Client>> ConnectFromArgs(const Args& args);
void PrintHelp(const std::string& command, const std::string& summary,
               const std::vector<FlagSpec>& specs);

int RunBench(const std::vector<std::string>& argv);
int RunTop(const std::vector<std::string>& argv);

}  // namespace mk::mkctl

#endif  // MK_CLIENT_SRC_MKCTL_COMMON_H_
