// libFuzzer target: the control-buffer layout and its host view (mk/engine/control_buffer.h,
// docs/protocol.md "Control buffer").
//
// Input: a layout (tenants, scratch words: mostly small, sometimes any 32-bit value), a buffer
// length relative to the layout's, then operations: tenant masks, quotas, scratch windows,
// metric reads, DONE_COUNT snapshots, and stores of arbitrary words anywhere (what a faulty
// engine or a torn snapshot could leave, TENANT_MASK_BASE included).
// Properties:
// - the layout's 32-bit arithmetic is exact whenever Create accepts it, and its regions (the
//   160-word header, each tenant's scratch window, the mask table) are disjoint and inside
//   TotalWords(); Create accepts exactly the layouts with tenants, scratch and an addressable
//   size, over buffers at least that long;
// - Initialize leaves exactly the documented words (mask base, one mask word per tenant);
// - every accessor answers OK or OUT_OF_RANGE as documented, reads the word a model says and
//   writes that word only (the whole buffer is compared with the model after every operation),
//   whatever TENANT_MASK_BASE holds; nothing is written outside the view.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "fuzz/libfuzzer/fuzz_support.h"
#include "mk/engine/control_buffer.h"
#include "mk/engine/protocol.h"

namespace mk::engine {
namespace {

namespace ctl = protocol::control;

constexpr uint64_t kMaxWords = 4096;  // larger layouts are checked without a buffer
constexpr uint32_t kGuard = 0x5A5A5A5Au;

uint32_t Count(fuzz::Input& in, uint32_t small) {
  return in.U8() < 224 ? in.Below(small) : in.U32();
}

// The layout's regions, in 64-bit arithmetic, against its own 32-bit accessors.
void CheckLayoutArithmetic(const ctl::Layout& layout) {
  const uint64_t tenants = layout.max_tenants;
  const uint64_t scratch = layout.scratch_words;
  const uint64_t end_of_scratch = ctl::kObservablesFirst + tenants * scratch;
  const bool compat = tenants <= ctl::kCompatMaskTenants;
  const uint64_t total = end_of_scratch + (compat ? 0 : tenants);
  MK_FUZZ_CHECK(layout.TotalWords() == total, "TotalWords ", layout.TotalWords(), " != ", total);
  const uint64_t mask_base = compat ? ctl::kCompatMaskFirst : end_of_scratch;
  MK_FUZZ_CHECK(layout.MaskBase() == mask_base, "MaskBase ", layout.MaskBase());
  // The compat mask table sits inside the header, below the quota words.
  if (compat) MK_FUZZ_CHECK(mask_base + tenants <= ctl::kQuotaFirst, "mask table in the quotas");
  for (uint64_t t : {uint64_t{0}, tenants / 2, tenants - 1}) {
    MK_FUZZ_CHECK(
        layout.ScratchFirst(static_cast<uint32_t>(t)) == ctl::kObservablesFirst + t * scratch,
        "ScratchFirst(", t, ")");
  }
  MK_FUZZ_CHECK(compat || mask_base + tenants <= total, "mask table past the end");
}

class Harness {
 public:
  Harness(fuzz::Input* in, ControlView view, std::vector<uint32_t>* storage)
      : in_(*in),
        view_(view),
        storage_(*storage),
        model_(view.words().begin(), view.words().end()) {}

  void Run() {
    const ctl::Layout& layout = view_.layout();
    CheckInitialized();
    for (int n = 0; n < 64 && !in_.empty(); ++n) {
      const uint32_t op = in_.Below(10);
      const uint32_t tenant = in_.U8() < 240 ? in_.Below(layout.max_tenants + 3) : in_.U32();
      switch (op) {
        case 0: {
          const bool enabled = in_.Bool();
          const absl::Status s = view_.SetTenantEnabled(tenant, enabled);
          const auto word = MaskWord(tenant);
          MK_FUZZ_CHECK(s.ok() == word.has_value(), s.ToString());
          if (word) model_[*word] = enabled ? 1 : 0;
          if (!s.ok()) MK_FUZZ_CHECK(absl::IsOutOfRange(s), s.ToString());
          break;
        }
        case 1: {
          const absl::StatusOr<bool> enabled = view_.TenantEnabled(tenant);
          const auto word = MaskWord(tenant);
          MK_FUZZ_CHECK(enabled.ok() == word.has_value(), enabled.status().ToString());
          if (word) MK_FUZZ_CHECK(*enabled == (model_[*word] != 0), "tenant ", tenant);
          break;
        }
        case 2: {
          const uint32_t quota = in_.U32();
          const absl::Status s = view_.SetTenantQuota(tenant, quota);
          MK_FUZZ_CHECK(s.ok() == (tenant < layout.max_tenants), s.ToString());
          if (s.ok()) model_[ctl::kQuotaFirst + tenant % ctl::kQuotaCount] = quota;
          break;
        }
        case 3: {
          const absl::StatusOr<absl::Span<uint32_t>> scratch = view_.TenantScratch(tenant);
          MK_FUZZ_CHECK(scratch.ok() == (tenant < layout.max_tenants), scratch.status().ToString());
          if (!scratch.ok()) break;
          const size_t first = layout.ScratchFirst(tenant);
          MK_FUZZ_CHECK(scratch->data() == view_.words().data() + first &&
                            scratch->size() == layout.scratch_words,
                        "window of tenant ", tenant);
          const uint32_t value = in_.U32();
          scratch->front() = value;
          scratch->back() = ~value;
          model_[first] = value;
          model_[first + layout.scratch_words - 1] = ~value;
          break;
        }
        case 4: {
          const absl::StatusOr<uint32_t> v = view_.OpcodeMetric(tenant);
          MK_FUZZ_CHECK(v.ok() == (tenant < ctl::kOpcodeMetricsCount), v.status().ToString());
          if (v.ok()) MK_FUZZ_CHECK(*v == model_[ctl::kOpcodeMetricsFirst + tenant], "metric");
          break;
        }
        case 5: {
          const absl::StatusOr<uint32_t> v = view_.PriorityFairness(tenant);
          MK_FUZZ_CHECK(v.ok() == (tenant < protocol::kPriorityCount), v.status().ToString());
          if (v.ok()) MK_FUZZ_CHECK(*v == model_[ctl::kPriorityFairnessFirst + tenant], "prio");
          break;
        }
        case 6:
          MK_FUZZ_CHECK(view_.TenantFairness(tenant) ==
                            model_[ctl::kTenantFairnessFirst + tenant % ctl::kTenantFairnessCount],
                        "fairness of tenant ", tenant);
          break;
        case 7: {  // any word, TENANT_MASK_BASE often
          const uint32_t word =
              in_.Bool() ? ctl::kTenantMaskBase : in_.U32() % static_cast<uint32_t>(model_.size());
          const uint32_t value = in_.U32();
          view_.Store(word, value);
          model_[word] = value;
          MK_FUZZ_CHECK(view_.Load(word) == value, "store ", word);
          break;
        }
        case 8: {
          const size_t length =
              in_.Bool() ? model_.size() : std::min<size_t>(model_.size(), tenant);
          const absl::StatusOr<uint32_t> done =
              ReadDoneCount(absl::MakeConstSpan(view_.words()).first(length));
          MK_FUZZ_CHECK(done.ok() == (length >= ctl::kMinWords), done.status().ToString());
          if (done.ok()) {
            MK_FUZZ_CHECK(*done == model_[ctl::kDoneCount] && *done == view_.done_count(), "done");
          }
          const uint32_t delta = in_.U32();
          MK_FUZZ_CHECK(DoneDelta(tenant, tenant + delta) == delta, "DoneDelta wraps");
          break;
        }
        default:
          view_.RequestShutdown();
          model_[ctl::kShutdown] = 1;
          MK_FUZZ_CHECK(view_.shutdown_requested(), "shutdown");
          break;
      }
      CheckModel();
    }
  }

 private:
  // The mask word an engine reads for `tenant`, or none (OUT_OF_RANGE).
  std::optional<uint32_t> MaskWord(uint32_t tenant) const {
    if (tenant >= view_.layout().max_tenants) return std::nullopt;
    const uint64_t word = uint64_t{model_[ctl::kTenantMaskBase]} + tenant;
    if (word >= model_.size()) return std::nullopt;
    return static_cast<uint32_t>(word);
  }

  void CheckInitialized() {
    const ctl::Layout& layout = view_.layout();
    std::fill(model_.begin(), model_.end(), 0);
    model_[ctl::kTenantMaskBase] = layout.MaskBase();
    for (uint32_t t = 0; t < layout.max_tenants; ++t) model_[layout.MaskBase() + t] = 1;
    CheckModel();
    for (uint32_t t : {0u, layout.max_tenants - 1}) {
      const absl::StatusOr<bool> enabled = view_.TenantEnabled(t);
      MK_FUZZ_CHECK(enabled.ok() && *enabled, "tenant ", t, " not enabled after Initialize");
    }
  }

  void CheckModel() const {
    const absl::Span<uint32_t> words = view_.words();
    const bool same =
        std::memcmp(words.data(), model_.data(), model_.size() * sizeof(uint32_t)) == 0;
    for (size_t i = 0; !same && i < model_.size(); ++i) {
      MK_FUZZ_CHECK(words[i] == model_[i], "word ", i, " is ", words[i], ", expected ", model_[i]);
    }
    // Beyond the view (a longer buffer) and around it nothing is ever written.
    for (size_t i = 1 + model_.size(); i < storage_.size(); ++i) {  // at most 8 words
      MK_FUZZ_CHECK(storage_[i] == kGuard, "write past the view at ", i - 1);
    }
    MK_FUZZ_CHECK(storage_.front() == kGuard, "write before the buffer");
  }

  fuzz::Input& in_;
  ControlView view_;
  const std::vector<uint32_t>& storage_;
  std::vector<uint32_t> model_;
};

void Fuzz(fuzz::Input& in) {
  const ctl::Layout layout{Count(in, 64), Count(in, 33)};
  const uint64_t need = uint64_t{ctl::kObservablesFirst} +
                        uint64_t{layout.max_tenants} * (uint64_t{layout.scratch_words} + 1);
  const bool addressable = layout.max_tenants > 0 && layout.scratch_words > 0 && need <= UINT32_MAX;
  if (addressable) CheckLayoutArithmetic(layout);
  const uint64_t total = addressable ? layout.TotalWords() : need;

  // The buffer: the layout's length plus a little, or shorter; small when the layout is large.
  const bool shorter = in.Bool();
  const uint32_t delta = in.U8();
  uint64_t size = shorter ? total - std::min<uint64_t>(total, 1 + delta) : total + delta % 8;
  if (size > kMaxWords) size = delta;
  std::vector<uint32_t> storage(size + 2, kGuard);
  const absl::Span<uint32_t> words = absl::MakeSpan(storage).subspan(1, size);

  absl::StatusOr<ControlView> view = ControlView::Create(words, layout);
  const bool expected = addressable && size >= total;
  MK_FUZZ_CHECK(view.ok() == expected, view.status().ToString(), " for ", layout.max_tenants,
                " tenants x ", layout.scratch_words, " words over ", size);
  if (!view.ok()) {
    MK_FUZZ_CHECK(absl::IsInvalidArgument(view.status()), view.status().ToString());
    return;
  }
  MK_FUZZ_CHECK(view->words().size() == total && view->words().data() == words.data(), "view");
  std::fill(view->words().begin(), view->words().end(), 0xDEADBEEFu);  // Initialize clears it
  view->Initialize();
  Harness(&in, *view, &storage).Run();
}

}  // namespace
}  // namespace mk::engine

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mk::fuzz::Input in(data, size);
  mk::engine::Fuzz(in);
  return 0;
}
