// TenantGate: which tenants may run (docs/protocol.md, "Control buffer": a tenant's slots run
// only while its mask word is non-zero). The control buffer's mask table is what the protocol
// and telemetry see; this keeps a copy of each flag on cache lines of its own, because the mask
// shares a line with DONE_COUNT, which every reap pass adds to, while the publish and claim
// paths read the flag for every slot. Change it only through SetEnabled, which writes both.
//
// Thread safety: every method may be called from any thread.
#ifndef MK_ENGINE_SRC_HOST_TENANT_GATE_H_
#define MK_ENGINE_SRC_HOST_TENANT_GATE_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "mk/engine/control_buffer.h"

namespace mk::engine::host {

class TenantGate {
 public:
  // Every tenant starts enabled, as ControlView::Initialize leaves the masks. `control` must
  // outlive the gate.
  TenantGate(const ControlView& control, uint32_t max_tenants);

  // `tenant` < max_tenants.
  bool Enabled(uint32_t tenant) const { return Flag(tenant).load(std::memory_order_acquire) != 0; }
  // OUT_OF_RANGE for a tenant past the mask table.
  absl::Status SetEnabled(uint32_t tenant, bool enabled);

 private:
  struct alignas(64) Line {
    std::atomic<uint8_t> enabled[64];
  };
  std::atomic<uint8_t>& Flag(uint32_t tenant) const {
    return lines_[tenant / 64].enabled[tenant % 64];
  }

  const ControlView& control_;
  std::unique_ptr<Line[]> lines_;
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_TENANT_GATE_H_
