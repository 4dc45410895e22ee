#include "host/ring_host.h"

#include "mk/base/page_memory.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <new>
#include <numeric>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "mk/engine/atomics.h"
#include "mk/base/cpu_relax.h"

namespace mk::engine::host {

namespace ctl = protocol::control;
using protocol::SlotStatus;

namespace {

constexpr const char* kPriorityNames[] = {"CRITICAL", "HIGH", "NORMAL", "LOW", "IDLE"};

Completion CompletionFromSlot(const uint32_t* slot, SlotStatus status, uint64_t ticket) {
  Completion c;
  c.tenant = slot[protocol::kWordTenant];
  c.opcode = slot[protocol::kWordOpcode];
  c.ticket = ticket;
  const uint32_t* args = slot + protocol::kWordArg0;
  if (status == SlotStatus::kDone) {
    c.status = CompletionStatus::kDone;
    std::copy(args, args + protocol::kArgWords, c.results.begin());
  } else {
    c.status = CompletionStatus::kFault;
    c.fault_code = args[0];
    c.fault_detail = args[1];
  }
  return c;
}

// Zeroed words in whole pages (std::bad_alloc on exhaustion, as std::vector would).
uint32_t* AllocatePageWords(size_t words) {
  void* memory = base::AllocatePages(words * sizeof(uint32_t));
  if (memory == nullptr) throw std::bad_alloc();
  return static_cast<uint32_t*>(memory);
}

}  // namespace

absl::StatusOr<std::unique_ptr<RingHost>> RingHost::Create(const EngineOptions& options) {
  if (options.ring_slots < protocol::kPriorityCount * 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine: ring_slots ", options.ring_slots, " is too small; use at least 10 (two per "
        "priority partition)"));
  }
  for (uint32_t w : options.partition_weights) {
    if (w == 0 || w > 1024) {
      return absl::InvalidArgumentError(
          "engine: partition_weights must each be 1..1024 so every priority has slots");
    }
  }
  if (options.debug_log_records < protocol::debug_log::kMinRecords) {
    return absl::InvalidArgumentError(absl::StrCat("engine: debug_log_records ",
                                                   options.debug_log_records,
                                                   " is below the protocol minimum of 64"));
  }
  if (options.max_tenants == 0 || options.scratch_words == 0 ||
      uint64_t{ctl::kObservablesFirst} +
              uint64_t{options.max_tenants} * (uint64_t{options.scratch_words} + 1) >
          (uint64_t{1} << 28)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine: max_tenants ", options.max_tenants, " x scratch_words ", options.scratch_words,
        " must both be >= 1 and fit a control buffer of at most 2^28 words"));
  }
  auto ring = HostRing::Create(options.ring_slots);
  if (!ring.ok()) return ring.status();
  const ctl::Layout layout{options.max_tenants, options.scratch_words};
  std::vector<uint32_t> control_words(layout.TotalWords());
  return std::unique_ptr<RingHost>(
      new RingHost(*std::move(ring), std::move(control_words), options));
}

RingHost::RingHost(std::unique_ptr<HostRing> ring, std::vector<uint32_t> control_words,
                   const EngineOptions& options)
    : ring_(std::move(ring)),
      control_words_(std::move(control_words)),
      control_(*ControlView::Create(absl::MakeSpan(control_words_),
                                    {options.max_tenants, options.scratch_words})),
      debug_log_words_(protocol::debug_log::BufferWords(options.debug_log_records)),
      debug_log_(AllocatePageWords(debug_log_words_)),
      debug_log_records_(options.debug_log_records),
      meta_(new SlotMeta[ring_->slot_count()]),
      next_ticket_(new std::atomic<uint64_t>[options.max_tenants]),
      tenant_enabled_(new TenantLine[(options.max_tenants + 63) / 64]),
      max_stored_completions_(options.max_stored_completions),
      collect_latency_(options.collect_latency),
      max_tenants_(options.max_tenants),
      outcome_counts_(new std::atomic<uint64_t>[size_t{options.max_tenants} * kOpcodeClassCount *
                                                kOutcomeCount]) {
  for (size_t i = 0; i < size_t{max_tenants_} * kOpcodeClassCount * kOutcomeCount; ++i) {
    outcome_counts_[i].store(0, std::memory_order_relaxed);
  }
  control_.Initialize();
  for (uint32_t t = 0; t < options.max_tenants; ++t) {
    next_ticket_[t].store(0);
    TenantFlag(t).store(*control_.TenantEnabled(t) ? 1 : 0);
  }
  // Partition sizes in proportion to the weights; NORMAL takes the rounding remainder.
  const uint32_t total = ring_->slot_count();
  const uint64_t weight_sum = std::accumulate(options.partition_weights.begin(),
                                              options.partition_weights.end(), uint64_t{0});
  uint32_t assigned = 0;
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    partitions_[p].size = std::max<uint32_t>(
        2, static_cast<uint32_t>(uint64_t{total} * options.partition_weights[p] / weight_sum));
    assigned += partitions_[p].size;
  }
  const uint32_t normal = static_cast<uint32_t>(protocol::Priority::kNormal);
  partitions_[normal].size = partitions_[normal].size + total - assigned;
  uint32_t first = 0;
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    partitions_[p].first = first;
    control_.Store(ctl::kPriorityPartitionFirst + p, first);
    first += partitions_[p].size;
  }
  control_.Store(ctl::kPriorityPartitionFirst + protocol::kPriorityCount, first);
}

protocol::ExecContext RingHost::MakeExecContext() {
  protocol::ExecContext ctx;
  ctx.control = control_words_.data();
  ctx.layout = control_.layout();
  ctx.debug_log = debug_log_.get();
  ctx.debug_log_records = debug_log_records_;
  return ctx;
}

uint64_t RingHost::IssuedTickets(uint32_t tenant) const {
  return next_ticket_[tenant].load(std::memory_order_acquire);
}

absl::Status RingHost::CheckTicketsIssued(uint32_t tenant,
                                          absl::Span<const uint64_t> tickets) const {
  const uint64_t issued = IssuedTickets(tenant);
  for (size_t i = 0; i < tickets.size(); ++i) {
    if (tickets[i] == 0 || tickets[i] > issued) {
      return absl::InvalidArgumentError(absl::StrCat(
          "engine: tickets[", i, "] = ", tickets[i], " was never issued to tenant ", tenant,
          " (tickets issued so far: 1..", issued, ")"));
    }
  }
  return absl::OkStatus();
}

void RingHost::WaitForAsync(uint32_t tenant, absl::Span<const uint64_t> tickets,
                            absl::Time deadline, CompletionStore::Callback done) {
  // The timer id is known only after TakeAsync returned; `expiry` lets whichever side finishes
  // second cancel the timer so finished waits leave nothing scheduled.
  struct Expiry {
    std::atomic<uint64_t> timer{0};
    std::atomic<bool> finished{false};
  };
  auto expiry = std::make_shared<Expiry>();
  const uint64_t id = store_.TakeAsync(
      tenant, tickets, [this, expiry, done = std::move(done)](std::vector<Completion> got) {
        expiry->finished.store(true, std::memory_order_seq_cst);
        if (uint64_t t = expiry->timer.load(std::memory_order_seq_cst); t != 0) timer_.Cancel(t);
        done(std::move(got));
      });
  if (expiry->finished.load(std::memory_order_seq_cst)) return;
  expiry->timer.store(timer_.Schedule(deadline, [this, id] { store_.Expire(id); }),
                      std::memory_order_seq_cst);
  if (expiry->finished.load(std::memory_order_seq_cst)) timer_.Cancel(expiry->timer.load());
}

absl::StatusOr<PublishResult> RingHost::Publish(uint32_t tenant,
                                                absl::Span<const SlotPayload> slots,
                                                CompletionSink* sink) {
  // Slots per priority, counted by runs: a batch usually carries one priority, and a per-slot
  // increment of one stack word is a store-forwarding chain (perf: two thirds of Publish).
  std::array<uint32_t, protocol::kPriorityCount> wanted{};
  for (size_t i = 0; i < slots.size();) {
    const uint32_t priority = slots[i].priority;
    size_t end = i + 1;
    while (end < slots.size() && slots[end].priority == priority) ++end;
    wanted[priority] += static_cast<uint32_t>(end - i);
    i = end;
  }
  if (sink == nullptr && store_.owed() + slots.size() > max_stored_completions_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "engine: ", store_.owed(), " completions are owed to Poll (in flight or stored); poll "
        "them (WaitFor) before publishing more, or publish with a completion sink"));
  }
  absl::InlinedVector<uint32_t, 64> index_of(slots.size());  // batch position -> ring slot
  // Under the lock only the reservation: capacity, tickets, and each partition's sequences
  // [first_sequence, first_sequence + wanted). The slots are written outside it, so producers
  // write their batches in parallel, and committed in reservation order below.
  std::array<uint64_t, protocol::kPriorityCount> first_sequence{};
  uint64_t first_ticket = 0;
  {
    std::lock_guard<std::mutex> lock(publish_mu_);
    for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
      Partition& part = partitions_[p];
      if (wanted[p] == 0) continue;
      if (wanted[p] > part.size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "publish: ", wanted[p], " ", kPriorityNames[p], " slots in one batch exceed the ",
            kPriorityNames[p], " partition (", part.size, " slots); split the batch"));
      }
      if (part.reserve - part.tail_seen + wanted[p] > part.size) {
        // Reaped slots are EMPTY before their completions are delivered, but the reaper moves
        // the tail over them only after the delivery: a caller who got every completion may
        // publish before that, so move the tail here too.
        AdvanceTail(p);
        part.tail_seen = part.tail.load(std::memory_order_acquire);
      }
      const uint64_t used = part.reserve - part.tail_seen;
      if (used + wanted[p] > part.size) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "ring: the ", kPriorityNames[p], " partition is full (", used, " of ", part.size,
            " slots in flight); retry after about 50us with backoff, or publish fewer slots"));
      }
    }
    for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
      first_sequence[p] = partitions_[p].reserve;
      partitions_[p].reserve += wanted[p];
    }
    first_ticket = next_ticket_[tenant].load(std::memory_order_relaxed) + 1;
    next_ticket_[tenant].store(first_ticket + slots.size() - 1, std::memory_order_release);
  }
  const uint64_t publish_ns = collect_latency_ ? NowNs() : 0;
  std::array<std::array<uint64_t, kOutcomeCount>, kOpcodeClassCount> published{};
  // One pass writes bookkeeping, payload and STATUS=PUBLISHED. Nothing is visible to executors
  // or to Cancel until the frontier moves below, so the order inside the pass is free.
  // Ring indices advance without a division per slot (the sequence -> index modulo is taken
  // once per partition the batch uses).
  std::array<uint32_t, protocol::kPriorityCount> next_index{};
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    if (wanted[p] != 0) next_index[p] = IndexOf(p, first_sequence[p]);
  }
  // The ring and meta lines were last written by the executor that reaped them, on another
  // core: ask for them some slots ahead so their transfers overlap.
  constexpr uint32_t kPrefetchAhead = 32;
  bool has_fence = false;
  for (size_t i = 0; i < slots.size(); ++i) {
    const SlotPayload& slot = slots[i];
    const Partition& part = partitions_[slot.priority];
    const uint32_t index = next_index[slot.priority];
    next_index[slot.priority] = part.Advance(index, 1);
    if (part.size > kPrefetchAhead) {
      const uint32_t ahead = part.Advance(index, kPrefetchAhead);
      PrefetchForWrite(ring().slot(ahead));
      PrefetchForWrite(&meta_[ahead]);
    }
    index_of[i] = index;
    has_fence |= slot.opcode == protocol::opcode::kBatchFence;
    SlotMeta& m = meta_[index];
    m.ticket.store(first_ticket + i, std::memory_order_relaxed);
    m.publish_ns = publish_ns;
    m.sink = sink;
    ++published[static_cast<uint32_t>(OpcodeClassOf(slot.opcode))]
               [static_cast<uint32_t>(Outcome::kPublished)];
    m.fence_waiter = kNoFence;
    m.fence_pending.store(0, std::memory_order_relaxed);
    uint32_t* w = ring().slot(index);
    w[protocol::kWordOpcode] = slot.opcode;
    w[protocol::kWordTenant] = tenant;
    w[protocol::kWordPriority] = slot.priority;
    std::copy(slot.args.begin(), slot.args.end(), w + protocol::kWordArg0);
    StatusWord(w).store(static_cast<uint32_t>(SlotStatus::kPublished), std::memory_order_release);
  }
  for (size_t i = 0; has_fence && i < slots.size(); ++i) {
    if (slots[i].opcode != protocol::opcode::kBatchFence) continue;
    uint32_t pending = 0;
    for (size_t j = i - slots[i].args[0]; j < i; ++j) {
      // A predecessor already covered by an earlier fence in the range is waited for through
      // that fence, which is itself a predecessor.
      SlotMeta& pm = meta_[index_of[j]];
      if (pm.fence_waiter != kNoFence) continue;
      pm.fence_waiter = index_of[i];
      ++pending;
    }
    meta_[index_of[i]].fence_pending.store(pending, std::memory_order_relaxed);
  }
  if (sink == nullptr) store_.AddOwed(slots.size());  // before any of them can be taken
  accepted_.fetch_add(slots.size(), std::memory_order_acq_rel);
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    if (wanted[p] == 0) continue;
    WaitForFrontier(partitions_[p], first_sequence[p]);  // commits in reservation order
    partitions_[p].frontier.store(first_sequence[p] + wanted[p], std::memory_order_release);
  }
  AddOutcomeCounts(tenant, published);
  return PublishResult{first_ticket, static_cast<uint32_t>(slots.size())};
}

void RingHost::WaitForFrontier(const Partition& part, uint64_t sequence) {
  // The producers that reserved sequences before `sequence` may still be writing them: the
  // frontier reaches `sequence` when the last of them commits. They hold no lock and write at
  // most one batch each, so the wait is short; yield now and then in case one was preempted.
  for (uint32_t spins = 1; part.frontier.load(std::memory_order_acquire) != sequence; ++spins) {
    if (spins % 64 == 0) {
      std::this_thread::yield();
    } else {
      base::CpuRelax();
    }
  }
}

bool RingHost::HasClaimable(uint32_t partition) const {
  const Partition& part = partitions_[partition];
  return part.claim.load(std::memory_order_acquire) != part.frontier.load(std::memory_order_acquire);
}

bool RingHost::HasAnyClaimable() const {
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    if (HasClaimable(p)) return true;
  }
  return false;
}

bool RingHost::ClaimBatch(uint32_t partition, uint32_t max, ClaimRange* out) {
  Partition& part = partitions_[partition];
  uint64_t begin = part.claim.load(std::memory_order_acquire);
  for (;;) {
    const uint64_t frontier = part.frontier.load(std::memory_order_acquire);
    if (begin >= frontier) return false;
    const uint64_t end = std::min(begin + max, frontier);
    if (part.claim.compare_exchange_weak(begin, end, std::memory_order_acq_rel)) {
      *out = ClaimRange{partition, begin, end};
      return true;
    }
  }
}

absl::Status RingHost::SetTenantEnabled(uint32_t tenant, bool enabled) {
  if (absl::Status s = control_.SetTenantEnabled(tenant, enabled); !s.ok()) return s;
  TenantFlag(tenant).store(enabled ? 1 : 0, std::memory_order_seq_cst);
  return absl::OkStatus();
}

uint32_t RingHost::IndexOf(uint32_t partition, uint64_t sequence) const {
  const Partition& part = partitions_[partition];
  return part.first + static_cast<uint32_t>(sequence % part.size);
}

uint32_t RingHost::PartitionOf(uint32_t index) const {
  for (uint32_t p = protocol::kPriorityCount - 1; p > 0; --p) {
    if (index >= partitions_[p].first) return p;
  }
  return 0;
}

bool RingHost::ReleaseFence(uint32_t fence_index) {
  return meta_[fence_index].fence_pending.fetch_sub(1, std::memory_order_acq_rel) == 1;
}

bool RingHost::ReapIfTerminal(uint32_t index, CompletionBatcher* out) {
  uint32_t* w = ring().slot(index);
  uint32_t status = StatusWord(w).load(std::memory_order_acquire);
  if (!protocol::IsTerminal(static_cast<SlotStatus>(status))) return false;
  const SlotMeta& m = meta_[index];
  const Completion c = CompletionFromSlot(w, static_cast<SlotStatus>(status),
                                          m.ticket.load(std::memory_order_relaxed));
  CompletionSink* sink = m.sink;
  const uint64_t publish_ns = m.publish_ns;
  if (!StatusWord(w).compare_exchange_strong(status, static_cast<uint32_t>(SlotStatus::kEmpty),
                                             std::memory_order_acq_rel)) {
    return false;  // another thread reaped it first
  }
  out->Add(sink, c, publish_ns);
  return true;
}

void RingHost::ReapRange(const ClaimRange& range, CompletionBatcher* out) {
  ForEachIndex(range, [&](uint32_t index) { ReapIfTerminal(index, out); });
  out->Flush();
  AdvanceTail(range.partition);
}

void RingHost::ReapIndices(absl::Span<const uint32_t> indices, CompletionBatcher* out) {
  std::array<bool, protocol::kPriorityCount> touched{};
  for (uint32_t index : indices) {
    ReapIfTerminal(index, out);
    touched[PartitionOf(index)] = true;
  }
  out->Flush();
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    if (touched[p]) AdvanceTail(p);
  }
}

void RingHost::ReapSlot(uint32_t index, CompletionBatcher* out) {
  ReapIfTerminal(index, out);
  AdvanceTail(PartitionOf(index));
}

void RingHost::AdvanceTail(uint32_t partition) {
  Partition& part = partitions_[partition];
  std::lock_guard<std::mutex> lock(part.tail_mu);
  uint64_t tail = part.tail.load(std::memory_order_relaxed);
  const uint64_t claim = part.claim.load(std::memory_order_acquire);
  const uint64_t start = tail;
  while (tail < claim &&
         StatusWord(ring().slot(IndexOf(partition, tail))).load(std::memory_order_acquire) ==
             static_cast<uint32_t>(SlotStatus::kEmpty)) {
    ++tail;
  }
  if (tail != start) part.tail.store(tail, std::memory_order_release);
}

bool RingHost::CancelSlot(uint32_t index, CompletionBatcher* out) {
  uint32_t* w = ring().slot(index);
  uint32_t status = StatusWord(w).load(std::memory_order_acquire);
  if (!protocol::IsClaimable(static_cast<SlotStatus>(status))) return false;
  const SlotMeta& m = meta_[index];
  Completion c;
  c.tenant = protocol::AtomicLoad(&w[protocol::kWordTenant]);
  c.opcode = protocol::AtomicLoad(&w[protocol::kWordOpcode]);
  c.ticket = m.ticket.load(std::memory_order_relaxed);
  c.status = CompletionStatus::kCancelled;
  CompletionSink* sink = m.sink;
  const uint32_t fence = m.fence_waiter;
  const uint64_t publish_ns = m.publish_ns;
  if (!StatusWord(w).compare_exchange_strong(status, static_cast<uint32_t>(SlotStatus::kEmpty),
                                             std::memory_order_acq_rel)) {
    return false;  // a worker claimed it first
  }
  out->Add(sink, c, publish_ns);
  if (fence != kNoFence && ReleaseFence(fence) && on_fence_ready_) on_fence_ready_(fence);
  return true;
}

uint32_t RingHost::CancelTickets(uint32_t tenant, absl::Span<const uint64_t> tickets,
                                 CompletionBatcher* out) {
  absl::flat_hash_set<uint64_t> wanted(tickets.begin(), tickets.end());
  uint32_t cancelled = 0;
  for (uint32_t p = 0; p < protocol::kPriorityCount && cancelled < wanted.size(); ++p) {
    Partition& part = partitions_[p];
    const uint64_t frontier = part.frontier.load(std::memory_order_acquire);
    for (uint64_t seq = part.tail.load(std::memory_order_acquire); seq < frontier; ++seq) {
      const uint32_t index = IndexOf(p, seq);
      if (!wanted.contains(meta_[index].ticket.load(std::memory_order_relaxed))) continue;
      if (protocol::AtomicLoad(&ring().slot(index)[protocol::kWordTenant]) != tenant) continue;
      cancelled += CancelSlot(index, out);
    }
    AdvanceTail(p);
  }
  return cancelled;
}

bool RingHost::ResumeWaiting(uint32_t index, uint64_t ticket, const protocol::ExecResult& result,
                             CompletionBatcher* out) {
  uint32_t fence = kNoFence;
  {
    std::lock_guard<std::mutex> lock(resume_mu_);
    uint32_t* w = ring().slot(index);
    if (StatusWord(w).load(std::memory_order_acquire) !=
            static_cast<uint32_t>(SlotStatus::kWaitIo) ||
        meta_[index].ticket.load(std::memory_order_relaxed) != ticket) {
      return false;
    }
    std::copy(result.results, result.results + result.result_count, w + protocol::kWordArg0);
    std::fill(w + protocol::kWordArg0 + result.result_count, w + protocol::kSlotWords, 0u);
    fence = meta_[index].fence_waiter;
    StatusWord(w).store(static_cast<uint32_t>(result.status), std::memory_order_release);
    protocol::AtomicFetchAdd(&control_words_[ctl::kDoneCount], 1);
  }
  if (fence != kNoFence && ReleaseFence(fence) && on_fence_ready_) on_fence_ready_(fence);
  ReapSlot(index, out);
  return true;
}

void RingHost::FailInFlight(CompletionBatcher* out) {
  std::lock_guard<std::mutex> lock(publish_mu_);
  // Producers that reserved before the lock finish writing their slots.
  for (const Partition& part : partitions_) WaitForFrontier(part, part.reserve);
  std::lock_guard<std::mutex> resume(resume_mu_);
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    Partition& part = partitions_[p];
    for (uint64_t seq = part.tail.load(); seq < part.reserve; ++seq) {
      const uint32_t index = IndexOf(p, seq);
      uint32_t* w = ring().slot(index);
      const auto status = static_cast<SlotStatus>(StatusWord(w).load(std::memory_order_acquire));
      if (status != SlotStatus::kEmpty && !protocol::IsTerminal(status)) {
        w[protocol::kWordArg0] = static_cast<uint32_t>(protocol::FaultCode::kEngineRestart);
        w[protocol::kWordArg0 + 1] = static_cast<uint32_t>(status);  // where it was
        StatusWord(w).store(static_cast<uint32_t>(SlotStatus::kFault), std::memory_order_release);
      }
      ReapIfTerminal(index, out);
    }
    part.claim.store(part.reserve, std::memory_order_release);
    part.tail.store(part.reserve, std::memory_order_release);
  }
}

}  // namespace mk::engine::host
