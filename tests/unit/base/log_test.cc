// The log's line format: UTC time to the microsecond, severity letter, message, one newline;
// and that a line reaches stderr whole.
#include "mk/base/log.h"

#include <regex>
#include <string>

#include "gtest/gtest.h"

namespace mk::base {
namespace {

TEST(LogTest, LineHasTimeSeverityAndMessage) {
  const std::string line = FormatLogLine(LogSeverity::kWarning, "cuda: slow stop (140 ms)");
  EXPECT_TRUE(std::regex_match(
      line, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z W cuda: slow stop \(140 ms\)\n)")))
      << line;
  EXPECT_EQ(FormatLogLine(LogSeverity::kInfo, "ends once\n").back(), '\n');
  EXPECT_EQ(FormatLogLine(LogSeverity::kInfo, "ends once\n").find("\n\n"), std::string::npos);
}

TEST(LogTest, LogWritesTheLineToStderr) {
  ::testing::internal::CaptureStderr();
  LogError("io: read failed (errno ", 5, "); check the disk");
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find(" E io: read failed (errno 5); check the disk\n"), std::string::npos) << err;
}

}  // namespace
}  // namespace mk::base
