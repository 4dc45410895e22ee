// mkctl soak's report: per server incarnation and in total, as text (stdout) and as JSON
// (--report_file, read by tests/soak/soak.py, which adds the server side: its own counts and
// its memory).
#ifndef MK_CLIENT_SRC_SOAK_REPORT_H_
#define MK_CLIENT_SRC_SOAK_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "soak_ledger.h"
#include "soak_session.h"

namespace mk::mkctl::soak {

struct IncarnationResult {
  int index = 0;
  std::string target;
  double open_loop_seconds = 0;
  bool server_went_away = false;  // ended by the server (a drain), not by the soak's end
  LedgerSummary ledger;
  SessionReport calls;
};

struct SoakResult {
  double capacity_rps = 0;  // closed loop, requests per second
  double capacity_slots_per_s = 0;
  uint32_t concurrency = 0;
  double target_rps = 0;  // the open loop's rate
  uint64_t late = 0;      // requests started more than 100 ms behind schedule
  std::vector<IncarnationResult> incarnations;
  std::vector<std::string> problems;  // violations outside the ledgers (no reconnect, ...)

  LedgerSummary TotalLedger() const;
  SessionReport TotalCalls() const;
  double OpenLoopSeconds() const;
  double AchievedRps() const;
  uint64_t Violations() const;
};

void PrintIncarnation(const IncarnationResult& r);
void PrintReport(const SoakResult& result);
absl::Status WriteJson(const SoakResult& result, const std::string& path);

}  // namespace mk::mkctl::soak

#endif  // MK_CLIENT_SRC_SOAK_REPORT_H_
