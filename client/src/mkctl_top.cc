// mkctl top: a live terminal view of one server: ring occupancy by state, slots completed per
// second overall and per tenant (from the fairness counters, tenant % 32), watchdog state.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <limits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "mkctl_common.h"

namespace mk::mkctl {

int RunTop(const std::vector<std::string>& argv) {
  int exit_code = 0;
  const auto args =
      ParseCommand("top", "Live view of ring occupancy, throughput per tenant and the watchdog.",
                   {
                       DurationFlag("interval", "1s", true, "refresh interval (> 0)"),
                       UintFlag("iterations", "0", 0, std::numeric_limits<uint64_t>::max(),
                                "frames to draw before exiting; 0 = until interrupted"),
                   },
                   argv, &exit_code);
  if (!args) return exit_code;
  const absl::Duration interval = args->Duration("interval");
  const uint64_t iterations = args->Uint("iterations");
  auto c = Connect(*args);
  if (!c.ok()) return Fail(c.status());
  const bool tty = isatty(STDOUT_FILENO);
  v1::Telemetry previous;
  std::chrono::steady_clock::time_point previous_at;
  bool have_previous = false;
  for (uint64_t frame = 0; iterations == 0 || frame < iterations; ++frame) {
    auto t = (*c)->GetTelemetry();
    if (!t.ok()) return Fail(t.status());
    const auto now = std::chrono::steady_clock::now();
    // The time between the two snapshots (at least --interval, which is > 0).
    const double seconds = std::chrono::duration<double>(now - previous_at).count();
    if (tty) std::printf("\033[H\033[2J");
    std::printf("megakerneld %s | %s | ring %u slots | %u workers\n",
                args->String("target").c_str(), t->engine().backend().c_str(),
                t->engine().ring_slots(), t->engine().workers());
    std::printf("watchdog: %s (queue depth %llu, done delta %u, faults %llu)\n",
                t->watchdog().suspected_stall() ? "STALLED" : "ok",
                static_cast<unsigned long long>(t->watchdog().queue_depth()),
                t->watchdog().done_delta(),
                static_cast<unsigned long long>(t->watchdog().faults()));
    const uint64_t total = std::max<uint64_t>(1, t->occupancy().total());
    std::printf("\noccupancy:\n");
    for (const char* state :
         {"EMPTY", "PUBLISHED", "CLAIMED", "DONE", "WAIT_IO", "YIELD", "REQUEUE", "FAULT"}) {
      auto it = t->occupancy().by_status().find(state);
      const uint64_t n = it == t->occupancy().by_status().end() ? 0 : it->second;
      const int bar = static_cast<int>(40.0 * n / total);
      std::printf("  %-10s %-40s %llu\n", state, std::string(bar, '#').c_str(),
                  static_cast<unsigned long long>(n));
    }
    if (have_previous) {
      std::printf("\nthroughput: %.0f slots/s\n",
                  static_cast<uint32_t>(t->done_count() - previous.done_count()) / seconds);
      std::printf("per tenant (tenant %% 32):\n");
      for (int i = 0; i < t->tenant_fairness_size() && i < previous.tenant_fairness_size(); ++i) {
        const uint32_t delta = t->tenant_fairness(i) - previous.tenant_fairness(i);
        if (delta != 0) std::printf("  tenant %-3d %12.0f slots/s\n", i, delta / seconds);
      }
    }
    std::fflush(stdout);
    previous = *t;
    previous_at = now;
    have_previous = true;
    if (iterations == 0 || frame + 1 < iterations) {
      std::this_thread::sleep_for(absl::ToChronoNanoseconds(interval));  // refresh period
    }
  }
  return 0;
}

}  // namespace mk::mkctl
