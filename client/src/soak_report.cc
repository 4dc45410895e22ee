#include "soak_report.h"

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace mk::mkctl::soak {

namespace {

std::string Faults(const LedgerSummary& s) {
  std::vector<std::string> parts;
  for (const auto& [code, n] : s.faults_by_code) {
    parts.push_back(absl::StrCat(FaultName(code), "=", n));
  }
  return parts.empty() ? "none" : absl::StrJoin(parts, " ");
}

std::string IoErrors(const LedgerSummary& s) {
  std::vector<std::string> parts;
  for (const auto& [err, n] : s.io_errors_by_errno) parts.push_back(absl::StrCat(err, "=", n));
  return absl::StrJoin(parts, " ");
}

std::string Refusals(const SessionReport& r) {
  std::vector<std::string> parts;
  for (const auto& [code, n] : r.rejected_by_code) parts.push_back(absl::StrCat(code, "=", n));
  return parts.empty() ? "none" : absl::StrJoin(parts, " ");
}

template <typename Map>
std::string JsonMap(const Map& m) {
  std::vector<std::string> parts;
  parts.reserve(m.size());
  for (const auto& [k, v] : m) parts.push_back(absl::StrCat("\"", k, "\": ", v));
  return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
  }
  return out + "\"";
}

std::string JsonLedger(const LedgerSummary& s, const SessionReport& calls) {
  std::vector<std::string> faults_injected;
  for (int i = 0; i < kActionCount; ++i) {
    if (calls.faults_injected[i] != 0) {
      faults_injected.push_back(
          absl::StrCat("\"", ActionName(static_cast<Action>(i)), "\": ", calls.faults_injected[i]));
    }
  }
  std::vector<std::string> examples;
  for (const std::string& e : s.examples) examples.push_back(JsonString(e));
  for (const std::string& e : calls.examples) examples.push_back(JsonString(e));
  return absl::StrCat(
      "\"accepted\": ", s.accepted, ", \"done\": ", s.done, ", \"fault\": ", s.fault,
      ", \"cancelled\": ", s.cancelled, ", \"cancelled_observed\": ", s.cancelled - s.abandoned,
      ", \"abandoned\": ", s.abandoned, ", \"lost\": ", s.lost, ", \"duplicated\": ", s.duplicated,
      ", \"unknown\": ", s.unknown, ", \"unexpected\": ", s.unexpected,
      ", \"gap_tickets\": ", s.gap_tickets, ", \"counter_adds\": ", s.counter_adds,
      ", \"counter_mismatches\": ", s.counter_mismatches,
      ", \"faults_by_code\": ", JsonMap(s.faults_by_code),
      ", \"io_errors_by_errno\": ", JsonMap(s.io_errors_by_errno), ", \"issued\": ", calls.issued,
      ", \"shed\": ", calls.shed, ", \"refused_by_code\": ", JsonMap(calls.rejected_by_code),
      ", \"unexpected_refusals\": ", calls.unexpected_rejections,
      ", \"unknown_opcode_accepted\": ", calls.unknown_opcode_accepted,
      ", \"poll_errors\": ", calls.poll_errors,
      ", \"registrations_failed\": ", calls.registrations_failed, ", \"faults_injected\": {",
      absl::StrJoin(faults_injected, ", "), "}, \"examples\": [", absl::StrJoin(examples, ", "),
      "]");
}

uint64_t CallViolations(const SessionReport& r) {
  return r.unexpected_rejections + r.unknown_opcode_accepted + r.poll_errors;
}

}  // namespace

LedgerSummary SoakResult::TotalLedger() const {
  LedgerSummary total;
  for (const IncarnationResult& r : incarnations) total.Add(r.ledger);
  return total;
}

SessionReport SoakResult::TotalCalls() const {
  SessionReport total;
  for (const IncarnationResult& r : incarnations) total.Add(r.calls);
  return total;
}

double SoakResult::OpenLoopSeconds() const {
  double s = 0;
  for (const IncarnationResult& r : incarnations) s += r.open_loop_seconds;
  return s;
}

double SoakResult::AchievedRps() const {
  const double s = OpenLoopSeconds();
  return s > 0 ? static_cast<double>(TotalCalls().issued) / s : 0;
}

uint64_t SoakResult::Violations() const {
  return TotalLedger().violations() + CallViolations(TotalCalls()) + problems.size();
}

void PrintIncarnation(const IncarnationResult& r) {
  const LedgerSummary& s = r.ledger;
  std::printf(
      "soak: incarnation %d (%s) %s after %.1f s: accepted=%llu done=%llu fault=%llu "
      "cancelled=%llu (abandoned %llu) lost=%llu duplicated=%llu unexpected=%llu\n",
      r.index, r.target.c_str(), r.server_went_away ? "ended by the server" : "ended",
      r.open_loop_seconds, static_cast<unsigned long long>(s.accepted),
      static_cast<unsigned long long>(s.done), static_cast<unsigned long long>(s.fault),
      static_cast<unsigned long long>(s.cancelled), static_cast<unsigned long long>(s.abandoned),
      static_cast<unsigned long long>(s.lost), static_cast<unsigned long long>(s.duplicated),
      static_cast<unsigned long long>(s.unexpected));
  std::fflush(stdout);
}

void PrintReport(const SoakResult& result) {
  const LedgerSummary s = result.TotalLedger();
  const SessionReport calls = result.TotalCalls();
  const bool balanced = s.accepted == s.done + s.fault + s.cancelled + s.lost;
  std::printf("soak report\n");
  std::printf("  capacity         %.0f requests/s (%.0f slots/s), closed loop, concurrency %u\n",
              result.capacity_rps, result.capacity_slots_per_s, result.concurrency);
  std::printf(
      "  open loop        target %.0f requests/s, achieved %.0f (%.0f%% of capacity) "
      "over %.1f s; %llu requests late, %llu shed\n",
      result.target_rps, result.AchievedRps(),
      result.capacity_rps > 0 ? 100.0 * result.AchievedRps() / result.capacity_rps : 0.0,
      result.OpenLoopSeconds(), static_cast<unsigned long long>(result.late),
      static_cast<unsigned long long>(calls.shed));
  std::printf("  incarnations     %zu\n", result.incarnations.size());
  std::printf("  accepted         %llu tickets (%llu found from the ticket sequence)\n",
              static_cast<unsigned long long>(s.accepted),
              static_cast<unsigned long long>(s.gap_tickets));
  std::printf("  done             %llu\n", static_cast<unsigned long long>(s.done));
  std::printf("  fault            %llu: %s\n", static_cast<unsigned long long>(s.fault),
              Faults(s).c_str());
  if (!s.io_errors_by_errno.empty()) {
    std::printf("  io errors        by errno: %s\n", IoErrors(s).c_str());
  }
  std::printf(
      "  cancelled        %llu (%llu CANCELLED outcomes, %llu given up by a client "
      "cancel)\n",
      static_cast<unsigned long long>(s.cancelled),
      static_cast<unsigned long long>(s.cancelled - s.abandoned),
      static_cast<unsigned long long>(s.abandoned));
  std::printf("  lost             %llu\n", static_cast<unsigned long long>(s.lost));
  std::printf("  duplicated       %llu (+%llu outcomes for unknown tickets)\n",
              static_cast<unsigned long long>(s.duplicated),
              static_cast<unsigned long long>(s.unknown));
  std::printf("  unexpected       %llu outcomes, %llu refusals\n",
              static_cast<unsigned long long>(s.unexpected),
              static_cast<unsigned long long>(calls.unexpected_rejections));
  std::printf("  counter check    %llu adds, %llu out of sequence\n",
              static_cast<unsigned long long>(s.counter_adds),
              static_cast<unsigned long long>(s.counter_mismatches));
  std::printf("  refused          by gRPC code: %s\n", Refusals(calls).c_str());
  std::printf("  faults injected ");
  for (int i = static_cast<int>(Action::kUnknownOpcode); i < kActionCount; ++i) {
    std::printf(" %s=%llu", ActionName(static_cast<Action>(i)),
                static_cast<unsigned long long>(calls.faults_injected[i]));
  }
  std::printf("\n  reconciliation   accepted == done + fault + cancelled + lost: %s\n",
              balanced ? "yes" : "NO");
  for (const std::string& e : s.examples) std::printf("  ! %s\n", e.c_str());
  for (const std::string& e : calls.examples) std::printf("  ! %s\n", e.c_str());
  for (const std::string& p : result.problems) std::printf("  ! %s\n", p.c_str());
  std::printf("soak: %s (%llu violations)\n", result.Violations() == 0 ? "PASS" : "FAIL",
              static_cast<unsigned long long>(result.Violations()));
  std::fflush(stdout);
}

absl::Status WriteJson(const SoakResult& result, const std::string& path) {
  std::vector<std::string> incarnations;
  for (const IncarnationResult& r : result.incarnations) {
    incarnations.push_back(
        absl::StrCat("{\"index\": ", r.index, ", \"target\": ", JsonString(r.target),
                     ", \"open_loop_seconds\": ", absl::StrFormat("%.3f", r.open_loop_seconds),
                     ", \"server_went_away\": ", r.server_went_away ? "true" : "false", ", ",
                     JsonLedger(r.ledger, r.calls), "}"));
  }
  std::vector<std::string> problems;
  for (const std::string& p : result.problems) problems.push_back(JsonString(p));
  const std::string json = absl::StrCat(
      "{\"capacity_rps\": ", absl::StrFormat("%.1f", result.capacity_rps),
      ", \"capacity_slots_per_s\": ", absl::StrFormat("%.1f", result.capacity_slots_per_s),
      ", \"concurrency\": ", result.concurrency,
      ", \"target_rps\": ", absl::StrFormat("%.1f", result.target_rps),
      ", \"achieved_rps\": ", absl::StrFormat("%.1f", result.AchievedRps()),
      ", \"open_loop_seconds\": ", absl::StrFormat("%.3f", result.OpenLoopSeconds()),
      ", \"late\": ", result.late, ", \"violations\": ", result.Violations(), ", \"problems\": [",
      absl::StrJoin(problems, ", "), "], \"total\": {",
      JsonLedger(result.TotalLedger(), result.TotalCalls()), "}, \"incarnations\": [",
      absl::StrJoin(incarnations, ", "), "]}\n");
  std::ofstream out(path);
  out << json;
  if (!out) return absl::UnavailableError(absl::StrCat("soak: cannot write ", path));
  return absl::OkStatus();
}

}  // namespace mk::mkctl::soak
