// mkctl buffer create | write | read | free | ls: tenant buffers from the command line
// (docs/buffers.md). Large transfers show a progress line with bytes/s on stderr when stderr
// is a terminal, and nothing when it is not.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "mkctl_common.h"

namespace mk::mkctl {

namespace {

constexpr uint64_t kMaxU32 = std::numeric_limits<uint32_t>::max();
constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();

// A progress line redrawn at most every 100 ms, on a terminal only; Done ends it.
class ProgressLine {
 public:
  explicit ProgressLine(const char* verb)
      : verb_(verb), enabled_(isatty(STDERR_FILENO) != 0), start_(Clock::now()) {}
  void Update(uint64_t done, uint64_t total) {
    if (!enabled_) return;
    const auto now = Clock::now();
    if (done != total && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const double mib = 1024.0 * 1024.0;
    std::fprintf(stderr, "\r%s %.1f / %.1f MiB (%.1f MiB/s)   ", verb_, done / mib, total / mib,
                 seconds > 0 ? done / mib / seconds : 0.0);
    drawn_ = true;
  }
  void Done() {
    if (drawn_) std::fprintf(stderr, "\n");
  }
  client::Client::Progress Callback() {
    return [this](uint64_t done, uint64_t total) { Update(done, total); };
  }

 private:
  using Clock = std::chrono::steady_clock;
  const char* const verb_;
  const bool enabled_;
  const Clock::time_point start_;
  Clock::time_point last_{};
  bool drawn_ = false;
};

// The bytes of `path` ("-": standard input).
absl::StatusOr<std::string> ReadInput(const std::string& path) {
  if (path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

absl::Status WriteOutput(const std::string& path, const std::string& bytes) {
  if (path.empty() || path == "-") {
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
    return std::fflush(stdout) == 0 ? absl::OkStatus()
                                    : absl::DataLossError("writing standard output failed");
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) return absl::DataLossError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

std::string HandleText(uint32_t handle) { return absl::StrFormat("0x%08x", handle); }

absl::StatusOr<uint64_t> BufferSize(client::Client& c, uint32_t handle) {
  auto listed = c.ListBuffers();
  if (!listed.ok()) return listed.status();
  for (const v1::Buffer& b : *listed) {
    if (b.handle() == handle) return b.bytes();
  }
  return absl::NotFoundError(
      absl::StrCat("buffer ", HandleText(handle), " is not one of yours (mkctl buffer ls)"));
}

int Upload(client::Client& c, uint32_t handle, uint64_t offset, const std::string& bytes,
           uint32_t chunk_bytes) {
  ProgressLine progress("write");
  auto written = c.WriteBuffer(handle, offset, bytes, chunk_bytes, progress.Callback());
  progress.Done();
  if (!written.ok()) return Fail(written.status());
  std::printf("wrote %llu bytes to buffer %s at offset %llu\n",
              static_cast<unsigned long long>(*written), HandleText(handle).c_str(),
              static_cast<unsigned long long>(offset));
  return 0;
}

}  // namespace

int RunBuffer(const std::vector<std::string>& argv) {
  const std::string verb = argv.empty() ? "" : argv[0];
  const std::vector<std::string> rest(argv.begin() + (argv.empty() ? 0 : 1), argv.end());
  int exit_code = 0;
  const FlagSpec handle_flag =
      UintFlag("handle", "", 0, kMaxU32, "the buffer's handle (as create printed it, 0x...)");
  const FlagSpec chunk_flag = UintFlag("chunk_bytes", "1048576", 1, 4u << 20, "bytes per message");
  std::optional<Args> args;
  if (verb == "create") {
    args = ParseCommand(
        "buffer create", "Creates a zero-filled buffer of --bytes, or one holding --from's bytes.",
        {UintFlag("bytes", "", 1, kMaxU64, "the buffer's size"),
         PathFlag("from", "a file (- for standard input) to create it from"), chunk_flag},
        rest, &exit_code);
  } else if (verb == "write") {
    args = ParseCommand("buffer write", "Writes a file's bytes into a buffer at --offset.",
                        {handle_flag, PathFlag("from", "the file (- for standard input)"),
                         UintFlag("offset", "0", 0, kMaxU64, "where the bytes land"), chunk_flag},
                        rest, &exit_code);
  } else if (verb == "read") {
    args = ParseCommand("buffer read", "Reads a buffer's bytes (to --out, else standard output).",
                        {handle_flag, UintFlag("offset", "0", 0, kMaxU64, "first byte"),
                         UintFlag("length", "0", 0, kMaxU64, "bytes (0: to the end of the buffer)"),
                         PathFlag("out", "file to write them to"), chunk_flag},
                        rest, &exit_code);
  } else if (verb == "free") {
    args = ParseCommand("buffer free", "Frees a buffer.", {handle_flag}, rest, &exit_code);
  } else if (verb == "ls") {
    args = ParseCommand("buffer ls", "Lists your buffers.", {}, rest, &exit_code);
  } else {
    return UsageError(
        "usage: mkctl buffer create|write|read|free|ls [--flag=value ...] (each with --help)");
  }
  if (!args) return exit_code;
  if ((verb == "write" || verb == "read" || verb == "free") && !args->Has("handle")) {
    return UsageError(absl::StrCat("buffer ", verb, " needs --handle"));
  }
  if (verb == "write" && !args->Has("from")) return UsageError("buffer write needs --from");
  if (verb == "create" && args->Has("bytes") == args->Has("from")) {
    return UsageError("buffer create needs one of --bytes and --from");
  }
  auto c = Connect(*args);
  if (!c.ok()) return Fail(c.status());
  client::Client& client = **c;
  const auto handle = static_cast<uint32_t>(args->Has("handle") ? args->Uint("handle") : 0);
  const auto chunk_bytes =
      static_cast<uint32_t>(args->Has("chunk_bytes") ? args->Uint("chunk_bytes") : 0);

  if (verb == "create") {
    std::string bytes;
    if (args->Has("from")) {
      auto input = ReadInput(args->String("from"));
      if (!input.ok()) return Fail(input.status());
      if (input->empty()) return UsageError("--from is empty; a buffer holds at least one byte");
      bytes = *std::move(input);
    }
    auto created = client.CreateBuffer(bytes.empty() ? args->Uint("bytes") : bytes.size());
    if (!created.ok()) return Fail(created.status());
    std::printf("created buffer %s (%llu bytes)\n", HandleText(created->handle()).c_str(),
                static_cast<unsigned long long>(created->bytes()));
    return bytes.empty() ? 0 : Upload(client, created->handle(), 0, bytes, chunk_bytes);
  }
  if (verb == "write") {
    auto input = ReadInput(args->String("from"));
    if (!input.ok()) return Fail(input.status());
    return Upload(client, handle, args->Uint("offset"), *input, chunk_bytes);
  }
  if (verb == "read") {
    uint64_t length = args->Uint("length");
    if (length == 0) {
      auto size = BufferSize(client, handle);
      if (!size.ok()) return Fail(size.status());
      if (args->Uint("offset") > *size) {
        return UsageError(
            absl::StrCat("--offset is past the end of the buffer (", *size, " bytes)"));
      }
      length = *size - args->Uint("offset");
    }
    ProgressLine progress("read");
    auto bytes =
        client.ReadBuffer(handle, args->Uint("offset"), length, chunk_bytes, progress.Callback());
    progress.Done();
    if (!bytes.ok()) return Fail(bytes.status());
    const std::string out = args->Has("out") ? args->String("out") : "";
    if (absl::Status s = WriteOutput(out, *bytes); !s.ok()) return Fail(s);
    return 0;
  }
  if (verb == "free") {
    if (absl::Status s = client.FreeBuffer(handle); !s.ok()) return Fail(s);
    std::printf("freed buffer %s\n", HandleText(handle).c_str());
    return 0;
  }
  auto listed = client.ListBuffers();
  if (!listed.ok()) return Fail(listed.status());
  for (const v1::Buffer& b : *listed) {
    std::printf("%s %llu bytes\n", HandleText(b.handle()).c_str(),
                static_cast<unsigned long long>(b.bytes()));
  }
  return 0;
}

}  // namespace mk::mkctl
