// The project's diagnostic log: one line per message on stderr, for example
//   2026-12-04T16:32:05.123456Z W cuda: the kernel took 140ms to stop
// (UTC time to the microsecond, the severity letter I, W or E, then the message). Messages
// follow the project's error style, "<component>: <what happened> (<observed>); <what to do>".
//
// Program output meant for people or scripts (megakerneld's startup lines, mkctl's results)
// is not logged: it goes to stdout as before. The log is for what an operator reads when
// something went wrong or slow.
//
// Thread safety: every function may be called from any thread. Each line is written whole with
// one write(2), so lines of concurrent messages never interleave.
#ifndef MK_BASE_LOG_H_
#define MK_BASE_LOG_H_

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace mk::base {

enum class LogSeverity : char { kInfo = 'I', kWarning = 'W', kError = 'E' };

// Writes one log line (a newline in `message` is kept; the line ends with one).
void Log(LogSeverity severity, absl::string_view message);
// The line Log writes, without writing it (tests check the format).
std::string FormatLogLine(LogSeverity severity, absl::string_view message);

// The message is the concatenation of the arguments (absl::StrCat).
template <typename... Args>
void LogInfo(const Args&... args) {
  Log(LogSeverity::kInfo, absl::StrCat(args...));
}
template <typename... Args>
void LogWarning(const Args&... args) {
  Log(LogSeverity::kWarning, absl::StrCat(args...));
}
template <typename... Args>
void LogError(const Args&... args) {
  Log(LogSeverity::kError, absl::StrCat(args...));
}

}  // namespace mk::base

#endif  // MK_BASE_LOG_H_
