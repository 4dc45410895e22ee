#include "mk/engine/control_buffer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "mk/engine/atomics.h"

namespace mk::engine {

namespace ctl = protocol::control;

absl::StatusOr<ControlView> ControlView::Create(absl::Span<uint32_t> words, ctl::Layout layout) {
  if (layout.max_tenants == 0 || layout.scratch_words == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("control: layout with ", layout.max_tenants, " tenants and ",
                     layout.scratch_words, " scratch words per tenant; both must be at least 1"));
  }
  const uint64_t need = uint64_t{ctl::kObservablesFirst} +
                        uint64_t{layout.max_tenants} * (uint64_t{layout.scratch_words} + 1);
  if (need > UINT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("control: layout needs ", need,
                     " words, more than a 32-bit word index can address; "
                     "lower max_tenants or scratch_words"));
  }
  if (words.size() < layout.TotalWords()) {
    return absl::InvalidArgumentError(
        absl::StrCat("control: buffer of ", words.size(), " words is shorter than the layout's ",
                     layout.TotalWords(), " (160 fixed + ", layout.max_tenants, " tenants x ",
                     layout.scratch_words, " scratch words + mask table)"));
  }
  return ControlView(words.first(layout.TotalWords()), layout);
}

void ControlView::Initialize() const {
  for (uint32_t& w : words_) std::atomic_ref<uint32_t>(w).store(0, std::memory_order_relaxed);
  Store(ctl::kTenantMaskBase, layout_.MaskBase());
  for (uint32_t t = 0; t < layout_.max_tenants; ++t) Store(layout_.MaskBase() + t, 1);
}

absl::StatusOr<uint32_t> ControlView::OpcodeMetric(uint32_t opcode) const {
  if (opcode >= ctl::kOpcodeMetricsCount) {
    return absl::OutOfRangeError(absl::StrCat("control: no metric word for opcode ", opcode,
                                              "; per-opcode metrics cover opcodes 0..31"));
  }
  return Load(ctl::kOpcodeMetricsFirst + opcode);
}

absl::StatusOr<uint32_t> ControlView::PriorityFairness(uint32_t priority) const {
  if (priority >= protocol::kPriorityCount) {
    return absl::OutOfRangeError(
        absl::StrCat("control: priority ", priority, " out of range; priorities are 0..4"));
  }
  return Load(ctl::kPriorityFairnessFirst + priority);
}

absl::StatusOr<uint32_t> ControlView::MaskWord(uint32_t tenant) const {
  if (tenant >= layout_.max_tenants) {
    return absl::OutOfRangeError(absl::StrCat("control: tenant ", tenant,
                                              " out of range; this engine serves tenants 0..",
                                              layout_.max_tenants - 1));
  }
  const uint64_t word = uint64_t{Load(ctl::kTenantMaskBase)} + tenant;
  if (word >= words_.size()) {
    return absl::OutOfRangeError(absl::StrCat(
        "control: TENANT_MASK_BASE ", Load(ctl::kTenantMaskBase), " + tenant ", tenant,
        " points past the buffer (", words_.size(), " words); reinitialize the control buffer"));
  }
  return static_cast<uint32_t>(word);
}

absl::StatusOr<bool> ControlView::TenantEnabled(uint32_t tenant) const {
  absl::StatusOr<uint32_t> word = MaskWord(tenant);
  if (!word.ok()) return word.status();
  return Load(*word) != 0;
}

absl::Status ControlView::SetTenantEnabled(uint32_t tenant, bool enabled) const {
  absl::StatusOr<uint32_t> word = MaskWord(tenant);
  if (!word.ok()) return word.status();
  Store(*word, enabled ? 1 : 0);
  return absl::OkStatus();
}

absl::Status ControlView::SetTenantQuota(uint32_t tenant, uint32_t quota) const {
  if (tenant >= layout_.max_tenants) {
    return absl::OutOfRangeError(absl::StrCat("control: tenant ", tenant, " out of range"));
  }
  // The quota table has 32 words; tenants share them modulo 32 (informational on the GPU).
  Store(ctl::kQuotaFirst + tenant % ctl::kQuotaCount, quota);
  return absl::OkStatus();
}

absl::StatusOr<absl::Span<uint32_t>> ControlView::TenantScratch(uint32_t tenant) const {
  if (tenant >= layout_.max_tenants) {
    return absl::OutOfRangeError(absl::StrCat("control: tenant ", tenant,
                                              " has no scratch window; tenants are 0..",
                                              layout_.max_tenants - 1));
  }
  return words_.subspan(layout_.ScratchFirst(tenant), layout_.scratch_words);
}

absl::StatusOr<uint32_t> ReadDoneCount(absl::Span<const uint32_t> snapshot) {
  if (snapshot.size() < ctl::kMinWords) {
    return absl::InvalidArgumentError(absl::StrCat(
        "control: snapshot of ", snapshot.size(),
        " words is shorter than the 160-word control header; read the whole control buffer"));
  }
  return protocol::AtomicLoad(&snapshot[ctl::kDoneCount]);  // the engine may be writing it
}

}  // namespace mk::engine
