// What the libFuzzer targets share: a front-to-back reader of the fuzz input (seeds are easy to
// write by hand: tests/fuzz/libfuzzer/make_seeds.py) and the property check, which aborts so that
// libFuzzer keeps the input as a crash.
#ifndef MK_TESTS_FUZZ_LIBFUZZER_FUZZ_SUPPORT_H_
#define MK_TESTS_FUZZ_LIBFUZZER_FUZZ_SUPPORT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace mk::fuzz {

// Reads the input from the front; past its end every read yields zeros (an empty view), so a
// target never has to check for the end before it reads.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t remaining() const { return size_ - pos_; }
  bool empty() const { return pos_ == size_; }

  uint8_t U8() { return pos_ < size_ ? data_[pos_++] : 0; }
  bool Bool() { return (U8() & 1) != 0; }
  uint32_t U32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{U8()} << (8 * i);  // little-endian
    return v;
  }
  uint64_t U64() {
    const uint64_t low = U32();
    return low | uint64_t{U32()} << 32;
  }
  // A value in [0, n) from one byte (n <= 256): small ranges cost the fuzzer one byte.
  uint32_t Below(uint32_t n) { return n == 0 ? 0 : U8() % n; }
  // Up to `n` bytes.
  absl::string_view Bytes(size_t n) {
    n = std::min(n, remaining());
    absl::string_view out(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return out;
  }
  absl::string_view Rest() { return Bytes(remaining()); }
  // Up to `n` little-endian words (a trailing partial word is zero-padded).
  std::vector<uint32_t> Words(size_t n) {
    std::vector<uint32_t> out;
    out.reserve(std::min(n, (remaining() + 3) / 4));
    while (out.size() < n && !empty()) out.push_back(U32());
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// A property does not hold: says which and where, then aborts (libFuzzer saves the input).
[[noreturn]] inline void Fail(const char* expression, const char* file, int line,
                              const std::string& detail) {
  std::fprintf(stderr, "%s:%d: fuzz property failed: %s\n  %s\n", file, line, expression,
               detail.c_str());
  std::abort();
}

}  // namespace mk::fuzz

// MK_FUZZ_CHECK(condition, detail...): the details are absl::StrCat arguments, evaluated only
// when the condition is false.
#define MK_FUZZ_CHECK(condition, ...)                                              \
  do {                                                                             \
    if (!(condition)) {                                                            \
      ::mk::fuzz::Fail(#condition, __FILE__, __LINE__, absl::StrCat(__VA_ARGS__)); \
    }                                                                              \
  } while (false)

#endif  // MK_TESTS_FUZZ_LIBFUZZER_FUZZ_SUPPORT_H_
