// libFuzzer target: the values megakerneld's flags take (server/src/main.cc declares them with
// Abseil's flag types and parses them with absl::ParseCommandLine) and its --engine names
// (mk::engine::ParseBackend).
//
// Input: one byte choosing the type, then the flag's text (dict/server_flags.dict).
// Properties:
// - for each type megakerneld declares (std::string, bool, int, uint32_t, int64_t, uint64_t,
//   absl::Duration) an accepted text round-trips: parse(unparse(parse(x))) == parse(x);
// - a text accepted for a narrower integer type means the same value as the wider type of the
//   same signedness (uint32_t -> uint64_t, int -> int64_t): a range check never changes a value;
// - ParseBackend accepts exactly auto, cpu, cuda and cuda-emulated, and a refusal quotes the
//   name it was given.
#include <cstdint>
#include <optional>
#include <string>

#include "absl/flags/marshalling.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "fuzz/libfuzzer/fuzz_support.h"
#include "mk/engine/engine.h"

namespace mk {
namespace {

template <typename T>
bool Parse(absl::string_view text, T* value) {
  std::string error;
  return absl::ParseFlag(text, value, &error);
}

// Returns the parsed value when `text` parses; checks that its unparsed form parses back.
template <typename T>
std::optional<T> RoundTrip(absl::string_view text) {
  T value{};
  if (!Parse(text, &value)) return std::nullopt;
  const std::string unparsed = absl::UnparseFlag(value);
  T again{};
  MK_FUZZ_CHECK(Parse(unparsed, &again) && again == value, "'", text, "' -> '", unparsed,
                "' does not parse back");
  return value;
}

void Fuzz(fuzz::Input& in) {
  const uint8_t type = in.U8();
  const absl::string_view text = in.Rest();
  switch (type % 5) {
    case 0: {
      const auto narrow = RoundTrip<uint32_t>(text);
      const auto wide = RoundTrip<uint64_t>(text);
      if (narrow) MK_FUZZ_CHECK(wide && *wide == *narrow, "'", text, "' as uint32 and uint64");
      break;
    }
    case 1: {
      const auto narrow = RoundTrip<int>(text);
      const auto wide = RoundTrip<int64_t>(text);
      if (narrow) MK_FUZZ_CHECK(wide && *wide == *narrow, "'", text, "' as int and int64");
      break;
    }
    case 2:
      RoundTrip<absl::Duration>(text);
      break;
    case 3:
      RoundTrip<bool>(text);
      RoundTrip<std::string>(text);
      break;
    default: {
      const absl::StatusOr<engine::EngineOptions::Backend> b = engine::ParseBackend(text);
      const bool known =
          text == "auto" || text == "cpu" || text == "cuda" || text == "cuda-emulated";
      MK_FUZZ_CHECK(b.ok() == known, "--engine=", text, ": ", b.status().ToString());
      if (!b.ok()) {
        MK_FUZZ_CHECK(absl::IsInvalidArgument(b.status()) &&
                          absl::StrContains(b.status().message(), absl::StrCat("'", text, "'")),
                      b.status().ToString());
      }
      break;
    }
  }
}

}  // namespace
}  // namespace mk

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mk::fuzz::Input in(data, size);
  mk::Fuzz(in);
  return 0;
}
