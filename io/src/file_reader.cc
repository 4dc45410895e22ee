#include "mk/io/file_reader.h"

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "errno_text.h"
#include "mk/base/log.h"
#include "reader_base.h"

namespace mk::io {

namespace {
constexpr char kErrnoPayload[] = "type.megakerneld/io.errno";
}  // namespace

absl::Status IoError(int error_number, const std::string& what, absl::StatusCode code) {
  absl::Status s(code, absl::StrCat("io: ", what, " (", ErrnoText(error_number), ", errno ",
                                    error_number, ")"));
  s.SetPayload(kErrnoPayload, absl::Cord(absl::StrCat(error_number)));
  return s;
}

int ErrnoOf(const absl::Status& status) {
  auto payload = status.GetPayload(kErrnoPayload);
  int e = 0;
  if (payload.has_value() && absl::SimpleAtoi(std::string{*payload}, &e)) return e;
  return 0;
}

absl::StatusOr<std::unique_ptr<FileReader>> FileReader::Create(const ReaderOptions& options) {
  if (options.chunk_bytes == 0 || options.chunk_bytes % 4096 != 0) {
    return absl::InvalidArgumentError("io: chunk_bytes must be a positive multiple of 4096");
  }
  if (options.staging_buffers == 0) {
    return absl::InvalidArgumentError("io: staging_buffers must be at least 1");
  }
  if (options.backend == Backend::kThreads) return CreateThreadPoolReader(options);
  auto uring = CreateUringReader(options);
  if (uring.ok() || options.backend == Backend::kUring) return uring;
  base::LogWarning(
      "io: io_uring unavailable (", uring.status().message(),
      "); using the thread-pool reader. A seccomp profile (Docker/Kubernetes RuntimeDefault) or "
      "kernel.io_uring_disabled blocks io_uring_setup: run with "
      "deploy/seccomp/megakerneld-io-uring.json (allows io_uring_setup/enter/register), or pass "
      "--io_backend=threads to choose this backend explicitly");
  return CreateThreadPoolReader(options);
}

}  // namespace mk::io
