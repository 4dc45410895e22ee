// mkctl soak: drives megakerneld at a share of its measured capacity with several tenants for
// a set time, injecting client-side faults, and reconciles every accepted ticket (docs/soak.md).
//
//   1. capacity: a closed loop of --concurrency callers publishing valid batches with a wait,
//      for --calibration (skipped with --rate);
//   2. the open loop: requests started at --load percent of that rate (or --rate), spread over
//      the tenants of --tokens_file, each one of the actions of soak_session.h (valid work,
//      and --fault_percent of faults), until --duration has passed;
//   3. when the server goes away (a drain) the incarnation is reconciled with what the client
//      received, then the soak waits for --target_file to name the next server and goes on;
//   4. the report: per incarnation and in total; exit status 1 on any violation.
//
// Threads: the main thread is the scheduler; each tenant's session has its own (see
// soak_session.h); the incarnation ends on the main thread, the sessions finishing in parallel.
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "mkctl_common.h"
#include "soak_report.h"
#include "soak_session.h"

namespace mk::mkctl {
namespace {

using soak::Action;
using Clock = std::chrono::steady_clock;

struct TenantToken {
  uint32_t tenant = 0;
  std::string token;
};

// The tenant lines of a tenants file (`tenant <id> <token>`; other lines are skipped).
absl::StatusOr<std::vector<TenantToken>> ReadTokens(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--tokens_file=", path, ": cannot open"));
  std::vector<TenantToken> out;
  std::string line;
  while (std::getline(in, line)) {
    const std::vector<std::string> f =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (f.size() != 3 || f[0] != "tenant") continue;
    TenantToken t;
    if (!absl::SimpleAtoi(f[1], &t.tenant)) continue;
    t.token = f[2];
    out.push_back(std::move(t));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tokens_file=", path, ": no 'tenant <id> <token>' line"));
  }
  return out;
}

absl::StatusOr<std::string> ReadTarget(const std::string& path) {
  std::ifstream in(path);
  std::string target;
  if (!in || !std::getline(in, target)) {
    return absl::NotFoundError(absl::StrCat("--target_file=", path, ": nothing to read"));
  }
  absl::StripAsciiWhitespace(&target);
  if (target.empty()) return absl::NotFoundError(absl::StrCat("--target_file=", path, ": empty"));
  return target;
}

// Waits (inotify on the file's folder, no polling) until `path` names a target other than
// `old`. The driver replaces the file by a rename once the new server listens.
absl::StatusOr<std::string> WaitForNewTarget(const std::string& path, const std::string& old,
                                             absl::Time deadline) {
  const int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) return absl::InternalError("soak: inotify_init1 failed");
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : path.substr(0, std::max<size_t>(slash, 1));
  inotify_add_watch(fd, dir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE);
  absl::StatusOr<std::string> result = absl::DeadlineExceededError(
      absl::StrCat("soak: --target_file=", path, " named no new server in time"));
  for (;;) {
    auto target = ReadTarget(path);  // after the watch is set: no change can slip by
    if (target.ok() && *target != old) {
      result = *target;
      break;
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 60000)));
    char events[4096];
    while (read(fd, events, sizeof(events)) > 0) {
    }
  }
  close(fd);
  return result;
}

// The sessions of one server incarnation, and whether the server went away.
// Declared first, server_gone outlives the sessions whose callbacks set it.
struct Incarnation {
  std::atomic<bool> server_gone{false};
  std::vector<std::unique_ptr<soak::TenantSession>> sessions;
};

absl::StatusOr<std::unique_ptr<Incarnation>> Connect(const Args& args, const std::string& target,
                                                     const std::vector<TenantToken>& tokens,
                                                     uint64_t seed) {
  auto inc = std::make_unique<Incarnation>();
  const std::vector<std::string> resources =
      absl::StrSplit(args.String("resources"), ',', absl::SkipEmpty());
  Incarnation* raw = inc.get();
  for (size_t i = 0; i < tokens.size(); ++i) {
    client::ClientOptions o = args.client_options();
    o.target = target;
    o.token = tokens[i].token;
    o.max_attempts = 1;  // the soak accounts for every call itself; nothing is retried
    auto c = client::Client::Create(o);
    if (!c.ok()) return c.status();
    soak::SessionOptions so;
    so.resources = resources;
    so.packed_stream = i % 2 == 1;
    so.max_in_flight = static_cast<uint32_t>(args.Uint("max_in_flight"));
    so.seed = seed + i;
    inc->sessions.push_back(std::make_unique<soak::TenantSession>(
        tokens[i].tenant, *std::move(c), so, &raw->server_gone,
        [raw] { raw->server_gone = true; }));
  }
  for (auto& s : inc->sessions) s->Start();
  return inc;
}

// The closed loop: `concurrency` callers, each publishing and waiting, round robin over the
// tenants. Returns requests per second (slots per second in *slots_per_s).
double MeasureCapacity(Incarnation& inc, uint32_t concurrency, absl::Duration duration,
                       uint64_t seed, double* slots_per_s) {
  std::atomic<uint64_t> calls{0}, slots{0};
  const auto start = Clock::now();
  const auto end = start + absl::ToChronoNanoseconds(duration);
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < concurrency; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed * 1000 + t);
      soak::TenantSession& s = *inc.sessions[t % inc.sessions.size()];
      while (Clock::now() < end && !inc.server_gone.load()) {
        uint32_t n = 0;
        if (s.CallOnce(rng, &n)) {
          ++calls;
          slots += n;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  *slots_per_s = static_cast<double>(slots.load()) / seconds;
  return static_cast<double>(calls.load()) / seconds;
}

// The share of each action: valid work 30/20/30/10, faults 2/2/2/2/1/1, scaled so the faults
// are `fault_percent` of the requests.
std::discrete_distribution<int> ActionMix(double fault_percent) {
  const double valid[] = {30, 20, 30, 10};
  const double faults[] = {2, 2, 2, 2, 1, 1};
  std::vector<double> w;
  for (double v : valid) w.push_back(v / 90.0 * (100.0 - fault_percent));
  for (double f : faults) w.push_back(f / 10.0 * fault_percent);
  return std::discrete_distribution<int>(w.begin(), w.end());
}

// Runs the open loop until `end` or until the server goes away. Returns the seconds it ran.
double OpenLoop(Incarnation& inc, double rate, Clock::time_point end, double fault_percent,
                std::mt19937_64& rng, uint64_t* late) {
  auto mix = ActionMix(fault_percent);
  const auto start = Clock::now();
  auto next_maintenance = start;
  const size_t n = inc.sessions.size();
  for (uint64_t i = 0; !inc.server_gone.load(); ++i) {
    const auto scheduled =
        start + std::chrono::nanoseconds(static_cast<int64_t>(1e9 * static_cast<double>(i) / rate));
    if (scheduled >= end) break;
    std::this_thread::sleep_until(scheduled);  // the open-loop schedule
    const auto now = Clock::now();
    if (now - scheduled > std::chrono::milliseconds(100)) ++*late;
    // Calls the previous tick marked for cancellation are cancelled now, a tick later.
    for (auto& session : inc.sessions) session->CancelMarked();
    inc.sessions[i % n]->Issue(static_cast<Action>(mix(rng)), rng);
    if (now >= next_maintenance) {
      for (auto& session : inc.sessions) session->Maintain();
      next_maintenance = now + std::chrono::seconds(1);
    }
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Ends the incarnation: every session reconciles at once (a draining server gives clients a
// short grace only).
soak::IncarnationResult EndIncarnation(Incarnation& inc, int index, const std::string& target,
                                       double seconds, absl::Duration settle) {
  const absl::Time deadline = absl::Now() + settle;
  std::vector<std::thread> finishing;
  for (auto& s : inc.sessions) {
    finishing.emplace_back([&s, deadline] { s->Finish(deadline); });
  }
  for (auto& t : finishing) t.join();
  soak::IncarnationResult r;
  r.index = index;
  r.target = target;
  r.open_loop_seconds = seconds;
  r.server_went_away = inc.server_gone.load();
  for (auto& s : inc.sessions) {
    r.ledger.Add(s->Summary());
    r.calls.Add(s->Report());
  }
  return r;
}

}  // namespace

int RunSoak(const std::vector<std::string>& argv) {
  int exit_code = 0;
  const auto args = ParseCommand(
      "soak",
      "Drives the server at --load percent of its measured capacity with every tenant of "
      "--tokens_file, injecting faults, and reconciles every accepted ticket (docs/soak.md).",
      {
          PathFlag("tokens_file", "tenant tokens: lines 'tenant <id> <token>' (a tenants file)"),
          PathFlag("target_file",
                   "read the target from this file, and after the server goes away wait for "
                   "it to name the next one (instead of --target)"),
          DurationFlag("duration", "60s", true, "how long the open loop runs"),
          DurationFlag("calibration", "3s", true, "how long the capacity is measured"),
          UintFlag("concurrency", "2", 1, 64, "callers of the closed loop that measures capacity"),
          UintFlag("load", "80", 1, 100, "open-loop rate, percent of the measured capacity"),
          UintFlag("rate", "0", 0, 1'000'000, "open-loop requests per second (0: measure)"),
          UintFlag("fault_percent", "10", 0, 50, "percent of requests that inject a fault"),
          StringFlag("resources", "", "comma-separated files of each tenant's folder to use"),
          UintFlag("max_in_flight", "64", 1, 4096, "asynchronous calls per tenant at once"),
          DurationFlag("settle_timeout", "30s", true,
                       "how long an ending incarnation may take to collect what it is owed"),
          DurationFlag("reconnect_timeout", "60s", true,
                       "how long to wait for --target_file to name the next server"),
          UintFlag("seed", "1", 0, UINT64_MAX, "random seed of the workload"),
          PathFlag("report_file", "also write the report here, as JSON"),
      },
      argv, &exit_code);
  if (!args) return exit_code;
  if (!args->Has("tokens_file")) return UsageError("soak needs --tokens_file");
  auto tokens = ReadTokens(args->String("tokens_file"));
  if (!tokens.ok()) return UsageError(tokens.status().message());
  const std::string target_file = args->String("target_file");
  std::string target = args->client_options().target;
  if (!target_file.empty()) {
    auto t = ReadTarget(target_file);
    if (!t.ok()) return Fail(t.status());
    target = *t;
  }
  const uint64_t seed = args->Uint("seed");
  std::mt19937_64 rng(seed);
  soak::SoakResult result;
  result.concurrency = static_cast<uint32_t>(args->Uint("concurrency"));
  auto inc = Connect(*args, target, *tokens, seed);
  if (!inc.ok()) return Fail(inc.status());
  std::printf("soak: %zu tenants at %s\n", tokens->size(), target.c_str());
  result.capacity_rps = MeasureCapacity(**inc, result.concurrency, args->Duration("calibration"),
                                        seed, &result.capacity_slots_per_s);
  std::printf("soak: capacity %.0f requests/s (%.0f slots/s), closed loop, concurrency %u\n",
              result.capacity_rps, result.capacity_slots_per_s, result.concurrency);
  result.target_rps = args->Uint("rate") != 0
                          ? static_cast<double>(args->Uint("rate"))
                          : result.capacity_rps * static_cast<double>(args->Uint("load")) / 100;
  if (result.target_rps < 1) return Fail(absl::UnavailableError("soak: no capacity measured"));
  const auto end = Clock::now() + absl::ToChronoNanoseconds(args->Duration("duration"));
  std::printf("soak: open loop at %.0f requests/s for %s\n", result.target_rps,
              absl::FormatDuration(args->Duration("duration")).c_str());
  std::fflush(stdout);
  const double fault_percent = static_cast<double>(args->Uint("fault_percent"));
  for (int index = 0;; ++index) {
    const double seconds =
        OpenLoop(**inc, result.target_rps, end, fault_percent, rng, &result.late);
    if (!(*inc)->server_gone.load()) {
      std::printf("soak: open loop over; reconciling\n");  // the driver's end-of-load mark
      std::fflush(stdout);
    }
    result.incarnations.push_back(
        EndIncarnation(**inc, index, target, seconds, args->Duration("settle_timeout")));
    soak::PrintIncarnation(result.incarnations.back());
    if (!(*inc)->server_gone.load() || Clock::now() >= end) break;
    inc->reset();
    if (target_file.empty()) {
      result.problems.push_back("the server went away and there is no --target_file to follow");
      break;
    }
    auto next =
        WaitForNewTarget(target_file, target, absl::Now() + args->Duration("reconnect_timeout"));
    if (!next.ok()) {
      result.problems.push_back(std::string{next.status().message()});
      break;
    }
    target = *next;
    inc = Connect(*args, target, *tokens, seed + 1000 * static_cast<uint64_t>(index + 1));
    if (!inc.ok()) {
      result.problems.push_back(std::string{inc.status().message()});
      break;
    }
    std::printf("soak: incarnation %d at %s: open loop resumed\n", index + 1, target.c_str());
    std::fflush(stdout);
  }
  soak::PrintReport(result);
  if (args->Has("report_file")) {
    if (absl::Status s = soak::WriteJson(result, args->String("report_file")); !s.ok()) {
      return Fail(s);
    }
  }
  return result.Violations() == 0 ? 0 : kExitFailed;
}

}  // namespace mk::mkctl
