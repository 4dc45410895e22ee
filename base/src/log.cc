#include "mk/base/log.h"

#include <unistd.h>

#include <cerrno>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mk::base {

std::string FormatLogLine(LogSeverity severity, absl::string_view message) {
  std::string line = absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ ", absl::Now(), absl::UTCTimeZone());
  line.push_back(static_cast<char>(severity));
  line.push_back(' ');
  line.append(message.data(), message.size());
  if (line.back() != '\n') line.push_back('\n');
  return line;
}

void Log(LogSeverity severity, absl::string_view message) {
  const std::string line = FormatLogLine(severity, message);
  // One write for the whole line (the kernel keeps writes to one file whole up to a page, far
  // more than a log line); a partial write (a signal, a full pipe) continues where it stopped.
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // stderr closed or broken: nowhere left to report it
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace mk::base
