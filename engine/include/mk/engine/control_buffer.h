// Host-side codec for the control buffer (docs/protocol.md, "Control buffer").
//
// ControlView is a non-owning view over a control buffer laid out by `protocol::control::Layout`
// (vyre's 160 fixed words, the tenant scratch windows, then the extended tenant-mask table).
// Engines update counters concurrently; every read here is an atomic relaxed load, so a snapshot
// is coherent per word, not across words. The buffer must outlive the view.
#ifndef MK_ENGINE_CONTROL_BUFFER_H_
#define MK_ENGINE_CONTROL_BUFFER_H_

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "mk/engine/protocol.h"

namespace mk::engine {

class ControlView {
 public:
  ControlView() = default;
  // Rejects layouts with no tenants or no scratch and buffers shorter than layout.TotalWords().
  static absl::StatusOr<ControlView> Create(absl::Span<uint32_t> words,
                                            protocol::control::Layout layout);

  // Writes the host-owned header: zeroes everything, points TENANT_MASK_BASE at the right
  // table and enables every tenant. Call once before an engine starts.
  void Initialize() const;

  const protocol::control::Layout& layout() const { return layout_; }
  absl::Span<uint32_t> words() const { return words_; }

  uint32_t Load(uint32_t word) const {
    return std::atomic_ref<uint32_t>(words_[word]).load(std::memory_order_acquire);
  }
  void Store(uint32_t word, uint32_t value) const {
    std::atomic_ref<uint32_t>(words_[word]).store(value, std::memory_order_release);
  }

  bool shutdown_requested() const { return Load(protocol::control::kShutdown) != 0; }
  void RequestShutdown() const { Store(protocol::control::kShutdown, 1); }
  uint32_t done_count() const { return Load(protocol::control::kDoneCount); }
  uint32_t epoch() const { return Load(protocol::control::kEpoch); }

  absl::StatusOr<uint32_t> OpcodeMetric(uint32_t opcode) const;
  absl::StatusOr<uint32_t> PriorityFairness(uint32_t priority) const;
  // Fairness words hold claims per (tenant % 32).
  uint32_t TenantFairness(uint32_t tenant) const {
    return Load(protocol::control::kTenantFairnessFirst + tenant % 32);
  }

  // Tenant masks through TENANT_MASK_BASE, as an engine reads them. OUT_OF_RANGE for a tenant
  // beyond the configured count or a mask base that points outside the buffer.
  absl::StatusOr<bool> TenantEnabled(uint32_t tenant) const;
  absl::Status SetTenantEnabled(uint32_t tenant, bool enabled) const;
  absl::Status SetTenantQuota(uint32_t tenant, uint32_t quota) const;

  // The tenant's scratch window (observable words). OUT_OF_RANGE past max_tenants.
  absl::StatusOr<absl::Span<uint32_t>> TenantScratch(uint32_t tenant) const;

 private:
  ControlView(absl::Span<uint32_t> words, protocol::control::Layout layout)
      : words_(words), layout_(layout) {}
  absl::StatusOr<uint32_t> MaskWord(uint32_t tenant) const;

  absl::Span<uint32_t> words_;
  protocol::control::Layout layout_{};
};

// DONE_COUNT from a raw snapshot. Fails (instead of returning 0) on a snapshot too short to
// hold the word, so a truncated read is never mistaken for "no progress".
absl::StatusOr<uint32_t> ReadDoneCount(absl::Span<const uint32_t> snapshot);

// Wrap-safe progress between two DONE_COUNT readings (the counter wraps at 2^32).
inline uint32_t DoneDelta(uint32_t before, uint32_t after) { return after - before; }

}  // namespace mk::engine

#endif  // MK_ENGINE_CONTROL_BUFFER_H_
