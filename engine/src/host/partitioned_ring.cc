#include "host/partitioned_ring.h"

#include <algorithm>
#include <numeric>
#include <thread>

#include "absl/strings/str_cat.h"
#include "mk/base/cpu_relax.h"
#include "mk/base/page_memory.h"
#include "mk/proto/packed_codec.h"

namespace mk::engine::host {

namespace {

using protocol::SlotStatus;

using protocol::kPriorityNames;

}  // namespace

absl::StatusOr<std::unique_ptr<PartitionedRing>> PartitionedRing::Create(
    uint32_t slot_count, const std::array<uint32_t, protocol::kPriorityCount>& weights) {
  if (slot_count < protocol::kPriorityCount * 2) {
    return absl::InvalidArgumentError(absl::StrCat("engine: ring_slots ", slot_count,
                                                   " is too small; use at least 10 (two per "
                                                   "priority partition)"));
  }
  if (slot_count > kMaxSlots) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine: ring_slots ", slot_count, " is too large; choose 10..", kMaxSlots));
  }
  for (uint32_t w : weights) {
    if (w == 0 || w > 1024) {
      return absl::InvalidArgumentError(
          "engine: partition_weights must each be 1..1024 so every priority has slots");
    }
  }
  const size_t bytes = size_t{slot_count} * protocol::kSlotBytes;
  void* memory = base::AllocatePages(bytes);
  if (memory == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("engine: cannot allocate the ", bytes, "-byte ring; lower --ring_slots"));
  }
  return std::unique_ptr<PartitionedRing>(
      new PartitionedRing(static_cast<uint32_t*>(memory), slot_count, weights));
}

PartitionedRing::PartitionedRing(uint32_t* words, uint32_t slot_count,
                                 const std::array<uint32_t, protocol::kPriorityCount>& weights)
    : words_(words), slot_count_(slot_count), meta_(new SlotMeta[slot_count]) {
  // Partition sizes in proportion to the weights; NORMAL takes the rounding remainder.
  const uint64_t weight_sum = std::accumulate(weights.begin(), weights.end(), uint64_t{0});
  uint32_t assigned = 0;
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    partitions_[p].size = std::max<uint32_t>(
        2, static_cast<uint32_t>(uint64_t{slot_count} * weights[p] / weight_sum));
    assigned += partitions_[p].size;
  }
  partitions_[static_cast<uint32_t>(protocol::Priority::kNormal)].size += slot_count - assigned;
  uint32_t first = 0;
  for (Partition& part : partitions_) {
    part.first = first;
    first += part.size;
  }
}

PartitionedRing::~PartitionedRing() = default;

absl::StatusOr<PartitionedRing::Reservation> PartitionedRing::Reserve(
    const PriorityCounts& wanted) {
  Reservation r;
  r.lock_ = std::unique_lock<std::mutex>(reserve_mu_);
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
    r.first_[p] = partitions_[p].reserve;
    r.count_[p] = wanted[p];
    partitions_[p].reserve += wanted[p];
  }
  return r;
}

void PartitionedRing::Commit(const Reservation& reservation) {
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    if (reservation.count(p) == 0) continue;
    const uint64_t first = reservation.first_sequence(p);
    WaitForFrontier(partitions_[p], first);  // commits in reservation order
    partitions_[p].frontier.store(first + reservation.count(p), std::memory_order_release);
  }
}

void PartitionedRing::WaitForFrontier(const Partition& part, uint64_t sequence) {
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

bool PartitionedRing::HasAnyClaimable() const {
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    if (HasClaimable(p)) return true;
  }
  return false;
}

bool PartitionedRing::ClaimBatch(uint32_t partition, uint32_t max, ClaimRange* out) {
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

uint32_t PartitionedRing::PartitionOf(uint32_t index) const {
  for (uint32_t p = protocol::kPriorityCount - 1; p > 0; --p) {
    if (index >= partitions_[p].first) return p;
  }
  return 0;
}

void PartitionedRing::AdvanceTail(uint32_t partition) {
  Partition& part = partitions_[partition];
  std::lock_guard<std::mutex> lock(part.tail_mu);
  uint64_t tail = part.tail.load(std::memory_order_relaxed);
  const uint64_t claim = part.claim.load(std::memory_order_acquire);
  const uint64_t start = tail;
  while (tail < claim && status(IndexOf(partition, tail)).load(std::memory_order_acquire) ==
                             static_cast<uint32_t>(SlotStatus::kEmpty)) {
    ++tail;
  }
  if (tail == start) return;
  // The tenants are read before the tail moves: past it, a publisher may rewrite the slots.
  ReleaseShares(partition, start, tail);
  part.tail.store(tail, std::memory_order_release);
}

void PartitionedRing::ReleaseShares(uint32_t partition, uint64_t begin, uint64_t end) const {
  if (shares_ == nullptr) return;
  uint32_t run_tenant = 0;
  uint64_t run = 0;
  ForEachIndex(ClaimRange{partition, begin, end}, [&](uint32_t index) {
    const uint32_t tenant = slot(index)[protocol::kWordTenant];
    if (run != 0 && tenant != run_tenant) {
      shares_->Release(run_tenant, partition, run);
      run = 0;
    }
    run_tenant = tenant;
    ++run;
  });
  if (run != 0) shares_->Release(run_tenant, partition, run);
}

void PartitionedRing::ForEachCommitted(uint32_t partition,
                                       absl::FunctionRef<void(uint32_t)> fn) const {
  const Partition& part = partitions_[partition];
  const uint64_t frontier = part.frontier.load(std::memory_order_acquire);
  for (uint64_t seq = part.tail.load(std::memory_order_acquire); seq < frontier; ++seq) {
    fn(IndexOf(partition, seq));
  }
}

void PartitionedRing::CountOccupancy(Occupancy* out) const {
  out->by_status.fill(0);
  out->invalid = 0;
  out->total = slot_count_;
  uint64_t scanned = 0;
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    const Partition& part = partitions_[p];
    uint64_t reserve;
    {
      std::lock_guard<std::mutex> lock(reserve_mu_);
      reserve = part.reserve;
    }
    const uint64_t tail = std::min(part.tail.load(std::memory_order_acquire), reserve);
    const uint64_t span = std::min<uint64_t>(reserve - tail, part.size);
    ForEachIndex(ClaimRange{p, tail, tail + span}, [&](uint32_t index) {
      const uint32_t s = status(index).load(std::memory_order_acquire);
      if (s < protocol::kSlotStatusCount) {
        ++out->by_status[s];
      } else {
        ++out->invalid;
      }
    });
    scanned += span;
  }
  out->by_status[static_cast<uint32_t>(SlotStatus::kEmpty)] += out->total - scanned;
  out->queue_depth = out->total - out->count(SlotStatus::kEmpty) - out->count(SlotStatus::kDone);
}

void PartitionedRing::SweepInFlight(absl::FunctionRef<void(uint32_t)> fn) {
  std::lock_guard<std::mutex> lock(reserve_mu_);
  // Producers that reserved before the lock finish writing their slots.
  for (const Partition& part : partitions_) WaitForFrontier(part, part.reserve);
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    Partition& part = partitions_[p];
    // Under the tail's lock: a concurrent AdvanceTail (a Cancel, a Publish's retry) neither
    // passes these slots itself (releasing their shares twice) nor stores an older tail.
    std::lock_guard<std::mutex> tail_lock(part.tail_mu);
    const uint64_t tail = part.tail.load(std::memory_order_relaxed);
    for (uint64_t seq = tail; seq < part.reserve; ++seq) fn(IndexOf(p, seq));
    ReleaseShares(p, tail, part.reserve);
    part.claim.store(part.reserve, std::memory_order_release);
    part.tail.store(part.reserve, std::memory_order_release);
  }
}

absl::Status PartitionedRing::CheckIndex(uint32_t slot_index) const {
  if (slot_index < slot_count_) return absl::OkStatus();
  return absl::OutOfRangeError(absl::StrCat("ring: slot index ", slot_index,
                                            " out of range; the ring has ", slot_count_,
                                            " slots (0..", slot_count_ - 1, ")"));
}

absl::Status PartitionedRing::Publish(uint32_t slot_index, absl::Span<const char> image) {
  if (image.size() != protocol::kSlotBytes) {
    return absl::InvalidArgumentError(absl::StrCat("ring: a slot image of ", image.size(),
                                                   " bytes for slot ", slot_index,
                                                   "; a slot image is exactly 64 bytes"));
  }
  if (absl::Status s = CheckIndex(slot_index); !s.ok()) return s;
  // Port producers take turns, so two racing for one EMPTY slot cannot both write it: the second
  // finds it PUBLISHED.
  std::lock_guard<std::mutex> lock(port_publish_mu_);
  const auto current = static_cast<SlotStatus>(status(slot_index).load(std::memory_order_acquire));
  if (absl::Status s = CheckTransition(current, SlotStatus::kPublished, Actor::kHost); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("ring: publish into slot ", slot_index,
                                                      " which is ", SlotStatusName(current),
                                                      "; publish only into EMPTY slots"));
  }
  const proto::PackedWords words = proto::LoadPackedWords(image.data());
  uint32_t* w = slot(slot_index);
  std::copy(words.begin() + 1, words.end(), w + 1);  // everything but STATUS
  status(slot_index)
      .store(static_cast<uint32_t>(SlotStatus::kPublished), std::memory_order_release);
  return absl::OkStatus();
}

absl::Status PartitionedRing::ReadSlot(uint32_t slot_index, absl::Span<char> image) const {
  if (image.size() != protocol::kSlotBytes) {
    return absl::InvalidArgumentError(absl::StrCat("ring: a ", image.size(),
                                                   "-byte buffer for slot ", slot_index,
                                                   "; a slot image is exactly 64 bytes"));
  }
  if (absl::Status s = CheckIndex(slot_index); !s.ok()) return s;
  proto::PackedWords words;
  words[0] = status(slot_index).load(std::memory_order_acquire);
  uint32_t* w = slot(slot_index);
  for (uint32_t i = 1; i < protocol::kSlotWords; ++i) {
    words[i] = std::atomic_ref<uint32_t>(w[i]).load(std::memory_order_relaxed);
  }
  proto::StorePackedWords(words, image.data());
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> PartitionedRing::DoneCount() const {
  uint64_t done = 0;
  for (uint32_t i = 0; i < slot_count_; ++i) {
    const uint32_t s = status(i).load(std::memory_order_acquire);
    if (s >= protocol::kSlotStatusCount) {
      return absl::DataLossError(absl::StrCat("ring: slot ", i, " has STATUS word ", s,
                                              ", which is no slot status (0..7); the ring "
                                              "memory is corrupt"));
    }
    done += s == static_cast<uint32_t>(SlotStatus::kDone);
  }
  return done;
}

}  // namespace mk::engine::host
