// mkctl soak's ticket ledger: every ticket one tenant was issued by one server incarnation,
// what the soak published under it, and the terminal outcome the soak received for it.
//
// Tickets are per tenant and per server process (1, 2, 3, ... from the process's start), so a
// ledger covers one tenant of one incarnation; a restart starts new ledgers.
//
// Every accepted ticket reaches the ledger in one of two ways: from the answer that accepted it
// (a Publish response, a Stream ack), or, when that answer was lost (a cancelled or timed-out
// Publish), from the ticket sequence itself: tickets are consecutive, so an unknown ticket below
// one the soak knows, issued before every call still in flight was sent, is a gap (ScanGaps),
// and tickets above the highest known one are found by asking the server (ExtendTo, after a
// Poll probe). Gap tickets were published without a sink, so Poll collects them.
//
// Giving an outcome up: a client that cancels a call (or lets its deadline pass) gives up what
// that call's answer carried, because the answer may be on its way when the cancel lands. So
// a ticket whose outcome never arrives is not lost when the client gave it up:
//   - tickets of a Stream the soak cancelled (Abandon);
//   - tickets listed in a Poll the soak cancelled (AtRisk): the server may have answered;
//   - gap tickets, up to the slots of the calls that ended without an answer that could have
//     been accepted (MayHaveBeenAccepted): a waiting Publish answered just as it was cancelled.
// Those count as abandoned (among the cancelled); every other ticket without an outcome is lost.
// Suspect tickets (gaps, at-risk ones) are polled apart from the others, without waiting, so
// ones that will never be answered do not hold up the rest: hot ones (polled fewer than
// kHotPolls times) every round, oldest first; then cold ones, round robin in large batches. An
// outcome the server stores is collected within a few seconds either way, so the server's
// completion store does not grow with the soak's given-up tickets.
//
// Thread safety: every method may be called from any thread (one mutex).
#ifndef MK_CLIENT_SRC_SOAK_LEDGER_H_
#define MK_CLIENT_SRC_SOAK_LEDGER_H_

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "mk/client/client.h"

namespace mk::mkctl::soak {

// What a slot was meant to do, hence which outcomes are expected of it (Expected()).
enum class SlotKind : uint8_t {
  kNone = 0,     // not known to the soak
  kValid,        // NOP, STORE_U32 / LOAD_U32 / SCRATCH_SUM in range: DONE
  kCounter,      // ATOMIC_ADD(1, kCounterIndex): DONE (the counter check)
  kOutOfBounds,  // an index past the scratch window: FAULT OUT_OF_BOUNDS
  kLoad,         // LOAD_MISS of a registered resource: DONE, FAULT IO_ERROR / RESOURCE_EXHAUSTED
  kChecksum,     // CHECKSUM of a registered resource: DONE, FAULT RESOURCE_NOT_FOUND (evicted)
  kBadResource,  // LOAD_MISS / CHECKSUM of an id nobody registered: FAULT RESOURCE_NOT_FOUND
  kUnknown,      // learned from the ticket sequence (its answer was lost): any outcome
};

// Fault codes (docs/protocol.md, "Fault codes").
inline constexpr uint32_t kFaultOutOfBounds = 2;
inline constexpr uint32_t kFaultResourceNotFound = 4;
inline constexpr uint32_t kFaultIoError = 5;
inline constexpr uint32_t kFaultResourceExhausted = 8;
const char* FaultName(uint32_t code);

// Every CANCELLED outcome is expected of every kind (a disabled tenant's parked slots are
// cancelled by a drain, a client cancel takes unclaimed slots); otherwise per kind as above.
bool Expected(SlotKind kind, const client::Completion& c);

// The reconciliation of one ledger, or of several added together.
struct LedgerSummary {
  uint64_t accepted = 0;
  uint64_t done = 0;
  uint64_t fault = 0;
  uint64_t cancelled = 0;  // CANCELLED outcomes received
  // Tickets of a Stream the soak cancelled whose outcome never arrived: the client gave the
  // outcome up (the server delivers a cancelled stream's outcomes nowhere). Counted among the
  // cancelled; the driver checks them against the server's own counts.
  uint64_t abandoned = 0;
  uint64_t lost = 0;        // accepted, no outcome received, not abandoned
  uint64_t duplicated = 0;  // a second outcome for a ticket
  uint64_t unknown = 0;     // an outcome for a ticket never accepted as far as the soak knows
  uint64_t unexpected = 0;  // an outcome its slot's kind does not allow (Expected)
  uint64_t gap_tickets = 0;
  std::map<uint32_t, uint64_t> faults_by_code;
  std::map<uint32_t, uint64_t> io_errors_by_errno;
  // The counter check: DONE ATOMIC_ADD(1, kCounterIndex) slots returned distinct previous
  // values below n plus the adds whose outcome never arrived: no slot ran twice, and no more
  // ran than were accepted (with every outcome seen, exactly 0..n-1).
  uint64_t counter_adds = 0;
  uint64_t counter_mismatches = 0;
  std::vector<std::string> examples;  // the first violations, for the report

  uint64_t violations() const {
    return lost + duplicated + unknown + unexpected + counter_mismatches;
  }
  void Add(const LedgerSummary& other);
};

class TenantLedger {
 public:
  explicit TenantLedger(uint32_t tenant) : tenant_(tenant) {}

  // A publishing call is about to be sent; EndCall when its answer (or error) is in. While it
  // is in flight, tickets above the highest known at its start may be its own (ScanGaps).
  uint64_t BeginCall();
  void EndCall(uint64_t call);
  // Tickets first .. first + kinds.size() - 1 were accepted; `pollable`: without a sink.
  // `completions`: outcomes that came with the answer (a Publish with a wait), recorded at once
  // so the poller never asks for them.
  void Accepted(uint64_t first, absl::Span<const SlotKind> kinds, bool pollable,
                absl::Span<const client::Completion> completions = {});
  // Terminal outcomes received.
  void Record(absl::Span<const client::Completion> completions);
  // The stream's cancel gave up these tickets' outcomes (those not received become abandoned).
  void Abandon(absl::Span<const uint64_t> tickets);
  // A Poll listing these tickets was cancelled: their outcomes may have been dropped with it.
  void AtRisk(absl::Span<const uint64_t> tickets);
  // A publishing call of `slots` slots ended without an answer, and the server may have
  // accepted it (cancelled, deadline passed, connection lost).
  void MayHaveBeenAccepted(uint64_t slots);

  // Unknown tickets below the watermark become kUnknown and pollable; returns how many.
  size_t ScanGaps();
  // The server issued tickets up to `issued`: unknown ones become kUnknown and pollable.
  void ExtendTo(uint64_t issued);
  uint64_t max_known() const;
  // Up to `max` pollable tickets without an outcome, oldest first; suspect ones apart.
  std::vector<uint64_t> PollBatch(size_t max) const;
  // Hot suspects, oldest first; Polled counts a poll of each (after kHotPolls it is cold).
  std::vector<uint64_t> SuspectBatch(size_t max) const;
  void Polled(absl::Span<const uint64_t> tickets);
  // Cold suspects, round robin from where the previous batch ended.
  std::vector<uint64_t> ColdBatch(size_t max);
  std::vector<uint64_t> AllSuspects() const;
  static constexpr uint32_t kHotPolls = 10;
  // Accepted tickets still without an outcome, neither abandoned nor suspect.
  uint64_t pending() const;
  size_t calls_in_flight() const;
  // Reconciles: every pending ticket counts as lost.
  LedgerSummary Summarize() const;
  uint32_t tenant() const { return tenant_; }

 private:
  // One byte per ticket: kind (bits 0..2), suspect (3), outcome (4..5: 0 none, 1 done,
  // 2 fault, 3 cancelled), pollable (6), abandoned (7).
  static constexpr uint8_t kKindMask = 0x07;
  static constexpr uint8_t kSuspect = 0x08;
  static constexpr uint8_t kOutcomeShift = 4;
  static constexpr uint8_t kOutcomeMask = 0x30;
  static constexpr uint8_t kPollable = 0x40;
  static constexpr uint8_t kAbandoned = 0x80;
  void EnsureLocked(uint64_t ticket);
  void RecordLocked(const client::Completion& c);
  void MarkUnknownLocked(uint64_t ticket);
  void EraseSuspectLocked(uint64_t ticket);
  void NoteLocked(const std::string& what);

  const uint32_t tenant_;
  mutable std::mutex mu_;
  std::vector<uint8_t> state_;          // by ticket; guarded by mu_
  uint64_t max_known_ = 0;              // guarded by mu_
  uint64_t scanned_ = 0;                // gaps scanned up to here; guarded by mu_
  std::map<uint64_t, uint64_t> calls_;  // call id -> max_known at its start; mu_
  uint64_t next_call_ = 1;              // guarded by mu_
  std::set<uint64_t> pollable_;         // pollable, not suspect, no outcome yet; guarded by mu_
  // Suspect, no outcome yet: hot (ticket -> polls so far) or cold. Guarded by mu_.
  std::map<uint64_t, uint32_t> hot_;
  std::set<uint64_t> cold_;
  uint64_t cold_cursor_ = 0;              // guarded by mu_
  uint64_t pending_ = 0;                  // guarded by mu_
  uint64_t unanswered_slots_ = 0;         // guarded by mu_
  std::vector<uint32_t> counter_values_;  // guarded by mu_
  LedgerSummary counts_;                  // outcomes so far; guarded by mu_
};

}  // namespace mk::mkctl::soak

#endif  // MK_CLIENT_SRC_SOAK_LEDGER_H_
