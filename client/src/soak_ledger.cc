#include "soak_ledger.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace mk::mkctl::soak {

namespace {
constexpr size_t kMaxExamples = 8;
using Status = client::Completion::Status;

uint8_t OutcomeBits(Status s) {
  switch (s) {
    case Status::kDone:
      return 1;
    case Status::kFault:
      return 2;
    case Status::kCancelled:
      return 3;
  }
  return 0;
}

const char* StatusName(Status s) {
  switch (s) {
    case Status::kDone:
      return "DONE";
    case Status::kFault:
      return "FAULT";
    case Status::kCancelled:
      return "CANCELLED";
  }
  return "?";
}
}  // namespace

const char* FaultName(uint32_t code) {
  static constexpr const char* kNames[] = {
      "NONE",     "UNKNOWN_OPCODE", "OUT_OF_BOUNDS",   "BAD_ARGUMENT",      "RESOURCE_NOT_FOUND",
      "IO_ERROR", "ENGINE_RESTART", "TENANT_DISABLED", "RESOURCE_EXHAUSTED"};
  return code < std::size(kNames) ? kNames[code] : "UNKNOWN_FAULT";
}

bool Expected(SlotKind kind, const client::Completion& c) {
  if (c.status == Status::kCancelled) return true;
  const bool done = c.status == Status::kDone;
  const uint32_t code = c.fault_code;
  switch (kind) {
    case SlotKind::kValid:
    case SlotKind::kCounter:
      return done;
    case SlotKind::kOutOfBounds:
      return !done && code == kFaultOutOfBounds;
    case SlotKind::kLoad:
      return done || code == kFaultIoError || code == kFaultResourceExhausted;
    case SlotKind::kChecksum:
      return done || code == kFaultResourceNotFound;
    case SlotKind::kBadResource:
      return !done && code == kFaultResourceNotFound;
    case SlotKind::kUnknown:
      return true;
    case SlotKind::kNone:
      return false;
  }
  return false;
}

void LedgerSummary::Add(const LedgerSummary& o) {
  accepted += o.accepted;
  done += o.done;
  fault += o.fault;
  cancelled += o.cancelled;
  abandoned += o.abandoned;
  lost += o.lost;
  duplicated += o.duplicated;
  unknown += o.unknown;
  unexpected += o.unexpected;
  gap_tickets += o.gap_tickets;
  for (const auto& [code, n] : o.faults_by_code) faults_by_code[code] += n;
  for (const auto& [err, n] : o.io_errors_by_errno) io_errors_by_errno[err] += n;
  counter_adds += o.counter_adds;
  counter_mismatches += o.counter_mismatches;
  for (const std::string& e : o.examples) {
    if (examples.size() < kMaxExamples) examples.push_back(e);
  }
}

uint64_t TenantLedger::BeginCall() {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t id = next_call_++;
  calls_[id] = max_known_;
  return id;
}

void TenantLedger::EndCall(uint64_t call) {
  std::lock_guard<std::mutex> lock(mu_);
  calls_.erase(call);
}

void TenantLedger::EnsureLocked(uint64_t ticket) {
  if (ticket >= state_.size()) state_.resize(std::max<uint64_t>(ticket + 1, state_.size() * 2));
}

void TenantLedger::NoteLocked(const std::string& what) {
  if (counts_.examples.size() < kMaxExamples) {
    counts_.examples.push_back(absl::StrCat("tenant ", tenant_, ": ", what));
  }
}

void TenantLedger::Accepted(uint64_t first, absl::Span<const SlotKind> kinds, bool pollable,
                            absl::Span<const client::Completion> completions) {
  if (kinds.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  EnsureLocked(first + kinds.size() - 1);
  for (size_t i = 0; i < kinds.size(); ++i) {
    const uint64_t t = first + i;
    if ((state_[t] & kKindMask) != 0) {  // accepted twice: two answers named this ticket
      ++counts_.duplicated;
      NoteLocked(absl::StrCat("ticket ", t, " was accepted by two answers"));
      continue;
    }
    state_[t] = static_cast<uint8_t>(static_cast<uint8_t>(kinds[i]) | (pollable ? kPollable : 0));
    if (pollable) pollable_.insert(t);
    ++pending_;
  }
  max_known_ = std::max(max_known_, first + kinds.size() - 1);
  for (const client::Completion& c : completions) RecordLocked(c);
}

void TenantLedger::Record(absl::Span<const client::Completion> completions) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const client::Completion& c : completions) RecordLocked(c);
}

void TenantLedger::RecordLocked(const client::Completion& c) {
  const uint64_t t = c.ticket;
  const auto kind =
      t < state_.size() ? static_cast<SlotKind>(state_[t] & kKindMask) : SlotKind::kNone;
  if (kind == SlotKind::kNone) {
    ++counts_.unknown;
    NoteLocked(absl::StrCat("an outcome for ticket ", t, ", which the soak never saw accepted"));
    return;
  }
  uint8_t& s = state_[t];
  if ((s & kOutcomeMask) != 0) {
    ++counts_.duplicated;
    NoteLocked(absl::StrCat("ticket ", t, " completed twice (", StatusName(c.status), ")"));
    return;
  }
  if ((s & kSuspect) != 0) {
    EraseSuspectLocked(t);
  } else if ((s & kAbandoned) == 0) {
    --pending_;
    if ((s & kPollable) != 0) pollable_.erase(t);
  }
  s &= static_cast<uint8_t>(~kAbandoned);  // an abandoned ticket's outcome came after all
  s |= static_cast<uint8_t>(OutcomeBits(c.status) << kOutcomeShift);
  switch (c.status) {
    case Status::kDone:
      ++counts_.done;
      if (kind == SlotKind::kCounter) {
        counter_values_.push_back(c.results.empty() ? 0 : c.results[0]);
      }
      break;
    case Status::kFault:
      ++counts_.fault;
      ++counts_.faults_by_code[c.fault_code];
      if (c.fault_code == kFaultIoError) ++counts_.io_errors_by_errno[c.fault_detail];
      break;
    case Status::kCancelled:
      ++counts_.cancelled;
      break;
  }
  if (!Expected(kind, c)) {
    ++counts_.unexpected;
    NoteLocked(absl::StrCat("ticket ", t, " (kind ", static_cast<int>(kind), ") ended ",
                            StatusName(c.status), " ", FaultName(c.fault_code),
                            " detail=", c.fault_detail));
  }
}

void TenantLedger::Abandon(absl::Span<const uint64_t> tickets) {
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t t : tickets) {
    if (t >= state_.size() || (state_[t] & kKindMask) == 0) continue;
    uint8_t& s = state_[t];
    if ((s & (kOutcomeMask | kAbandoned | kSuspect)) != 0) continue;
    s |= kAbandoned;
    --pending_;
    if ((s & kPollable) != 0) pollable_.erase(t);
  }
}

void TenantLedger::AtRisk(absl::Span<const uint64_t> tickets) {
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t t : tickets) {
    if (t >= state_.size() || (state_[t] & kKindMask) == 0) continue;
    uint8_t& s = state_[t];
    if ((s & (kOutcomeMask | kAbandoned | kSuspect)) != 0 || (s & kPollable) == 0) continue;
    s |= kSuspect;
    --pending_;
    pollable_.erase(t);
    hot_.emplace(t, 0);
  }
}

void TenantLedger::MayHaveBeenAccepted(uint64_t slots) {
  std::lock_guard<std::mutex> lock(mu_);
  unanswered_slots_ += slots;
}

void TenantLedger::MarkUnknownLocked(uint64_t ticket) {
  EnsureLocked(ticket);
  if ((state_[ticket] & kKindMask) != 0) return;
  state_[ticket] = static_cast<uint8_t>(SlotKind::kUnknown) | kPollable | kSuspect;
  hot_.emplace(ticket, 0);
  ++counts_.gap_tickets;
}

size_t TenantLedger::ScanGaps() {
  std::lock_guard<std::mutex> lock(mu_);
  // Calls start in id order and max_known_ only grows: the oldest call has the lowest mark.
  const uint64_t watermark = calls_.empty() ? max_known_ : calls_.begin()->second;
  size_t found = 0;
  for (uint64_t t = scanned_ + 1; t <= watermark; ++t) {
    if (t < state_.size() && (state_[t] & kKindMask) != 0) continue;
    MarkUnknownLocked(t);
    ++found;
  }
  scanned_ = std::max(scanned_, watermark);
  return found;
}

void TenantLedger::ExtendTo(uint64_t issued) {
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t t = scanned_ + 1; t <= issued; ++t) {
    if (t >= state_.size() || (state_[t] & kKindMask) == 0) MarkUnknownLocked(t);
  }
  max_known_ = std::max(max_known_, issued);
  scanned_ = std::max(scanned_, issued);
}

uint64_t TenantLedger::max_known() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_known_;
}

namespace {
std::vector<uint64_t> First(const std::set<uint64_t>& set, size_t max) {
  std::vector<uint64_t> out;
  for (auto it = set.begin(); it != set.end() && out.size() < max; ++it) out.push_back(*it);
  return out;
}
}  // namespace

std::vector<uint64_t> TenantLedger::PollBatch(size_t max) const {
  std::lock_guard<std::mutex> lock(mu_);
  return First(pollable_, max);
}

std::vector<uint64_t> TenantLedger::SuspectBatch(size_t max) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> out;
  for (auto it = hot_.begin(); it != hot_.end() && out.size() < max; ++it) out.push_back(it->first);
  return out;
}

void TenantLedger::Polled(absl::Span<const uint64_t> tickets) {
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t t : tickets) {
    auto it = hot_.find(t);
    if (it == hot_.end() || ++it->second < kHotPolls) continue;
    hot_.erase(it);  // still unanswered: most likely never will be
    cold_.insert(t);
  }
}

std::vector<uint64_t> TenantLedger::ColdBatch(size_t max) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> out;
  auto it = cold_.upper_bound(cold_cursor_);
  while (out.size() < max && out.size() < cold_.size()) {
    if (it == cold_.end()) it = cold_.begin();  // wrap around
    out.push_back(*it++);
  }
  cold_cursor_ = out.empty() ? 0 : out.back();
  return out;
}

std::vector<uint64_t> TenantLedger::AllSuspects() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> out;
  out.reserve(hot_.size() + cold_.size());
  for (const auto& [t, polls] : hot_) out.push_back(t);
  out.insert(out.end(), cold_.begin(), cold_.end());
  return out;
}

void TenantLedger::EraseSuspectLocked(uint64_t ticket) {
  if (hot_.erase(ticket) == 0) cold_.erase(ticket);
}

uint64_t TenantLedger::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_;
}

size_t TenantLedger::calls_in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_.size();
}

LedgerSummary TenantLedger::Summarize() const {
  std::lock_guard<std::mutex> lock(mu_);
  LedgerSummary out = counts_;
  uint64_t first_lost = 0;
  std::string first_lost_what;
  uint64_t gaps_unresolved = 0;
  uint64_t counter_given_up = 0;  // counter adds without an outcome
  for (uint64_t t = 1; t < state_.size(); ++t) {
    const uint8_t s = state_[t];
    if ((s & kKindMask) == 0) continue;
    ++out.accepted;
    if ((s & kOutcomeMask) != 0) continue;
    const auto kind = static_cast<SlotKind>(s & kKindMask);
    if (kind == SlotKind::kCounter) ++counter_given_up;
    if ((s & kSuspect) != 0 && kind == SlotKind::kUnknown) {
      ++gaps_unresolved;  // settled below against the unanswered calls
    } else if ((s & (kAbandoned | kSuspect)) != 0) {
      ++out.abandoned;  // on a Stream the soak cancelled, or listed in a cancelled Poll
    } else {
      ++out.lost;
      if (first_lost == 0) {
        first_lost = t;
        first_lost_what = absl::StrCat("kind ", s & kKindMask,
                                       (s & kPollable) != 0 ? ", pollable" : ", on a stream");
      }
    }
  }
  // Gap tickets are tickets of calls that ended without an answer; as many as those calls'
  // slots less the gaps that were answered may have had their outcomes dropped with the answer.
  const uint64_t resolved = out.gap_tickets - gaps_unresolved;
  const uint64_t budget = unanswered_slots_ > resolved ? unanswered_slots_ - resolved : 0;
  const uint64_t given_up = std::min(gaps_unresolved, budget);
  out.abandoned += given_up;
  out.lost += gaps_unresolved - given_up;
  out.cancelled += out.abandoned;
  if (out.lost != 0 && out.examples.size() < kMaxExamples) {
    out.examples.push_back(absl::StrCat(
        "tenant ", tenant_, ": ", out.lost, " tickets without an outcome (the first: ", first_lost,
        ", ", first_lost_what, "; unresolved gaps: ", gaps_unresolved, ")"));
  }
  // The counter check: n DONE adds of 1 to one word returned n distinct values, all below n
  // plus the adds whose outcome was given up (those ran unseen, or not at all).
  std::vector<uint32_t> values = counter_values_;
  std::sort(values.begin(), values.end());
  out.counter_adds = values.size();
  const uint64_t bound = values.size() + counter_given_up;
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] >= bound || (i > 0 && values[i] == values[i - 1])) ++out.counter_mismatches;
  }
  if (out.counter_mismatches != 0 && out.examples.size() < kMaxExamples) {
    out.examples.push_back(absl::StrCat("tenant ", tenant_, ": ", out.counter_mismatches, " of ",
                                        values.size(),
                                        " counter adds returned a repeated or impossible value"));
  }
  return out;
}

}  // namespace mk::mkctl::soak
