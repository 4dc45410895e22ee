#include "host/tenant_gate.h"

namespace mk::engine::host {

TenantGate::TenantGate(const ControlView& control, uint32_t max_tenants)
    : control_(control), lines_(new Line[(max_tenants + 63) / 64]) {
  for (uint32_t t = 0; t < max_tenants; ++t) {
    auto enabled = control_.TenantEnabled(t);
    Flag(t).store(enabled.ok() && *enabled ? 1 : 0);
  }
}

absl::Status TenantGate::SetEnabled(uint32_t tenant, bool enabled) {
  if (absl::Status s = control_.SetTenantEnabled(tenant, enabled); !s.ok()) return s;
  Flag(tenant).store(enabled ? 1 : 0, std::memory_order_seq_cst);
  return absl::OkStatus();
}

}  // namespace mk::engine::host
