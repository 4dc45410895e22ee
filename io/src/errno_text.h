// The text of an errno value, for io's messages. std::strerror may hand back a buffer another
// thread overwrites; the GNU strerror_r returns the message (in `buffer` or a static string).
#ifndef MK_IO_SRC_ERRNO_TEXT_H_
#define MK_IO_SRC_ERRNO_TEXT_H_

#include <cstring>
#include <string>

namespace mk::io {

inline std::string ErrnoText(int error_number) {
  char buffer[128];
  return std::string{strerror_r(error_number, buffer, sizeof(buffer))};
}

}  // namespace mk::io

#endif  // MK_IO_SRC_ERRNO_TEXT_H_
