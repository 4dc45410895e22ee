// TenantLimiter: at most N concurrent things (streams) per tenant. Acquire hands out a lease
// that gives its place back when destroyed, so whoever owns the stream owns the place.
//
// Thread safety: Acquire and lease destruction may run on any thread. The limiter must outlive
// every lease.
#ifndef MK_SERVER_SRC_TENANT_LIMITER_H_
#define MK_SERVER_SRC_TENANT_LIMITER_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace mk::server {

class TenantLimiter {
 public:
  // `what` names the thing in errors ("streams"); `flag` the option that sets the limit.
  TenantLimiter(uint32_t max_per_tenant, std::string what, std::string flag)
      : max_(max_per_tenant), what_(std::move(what)), flag_(std::move(flag)) {}

  class Lease {
   public:
    Lease(TenantLimiter* limiter, uint32_t tenant) : limiter_(limiter), tenant_(tenant) {}
    ~Lease() { limiter_->Release(tenant_); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

   private:
    TenantLimiter* const limiter_;
    const uint32_t tenant_;
  };

  // RESOURCE_EXHAUSTED naming the count and the limit when `tenant` holds max_per_tenant.
  absl::StatusOr<std::unique_ptr<Lease>> Acquire(uint32_t tenant) {
    std::lock_guard<std::mutex> lock(mu_);
    uint32_t& held = held_[tenant];
    if (max_ != 0 && held >= max_) {
      return absl::ResourceExhaustedError(absl::StrCat("server: tenant ", tenant, " has ", held,
                                                       " open ", what_, ", the limit (", flag_,
                                                       "); close one first"));
    }
    ++held;
    return std::make_unique<Lease>(this, tenant);
  }
  uint32_t held(uint32_t tenant) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = held_.find(tenant);
    return it == held_.end() ? 0 : it->second;
  }

 private:
  void Release(uint32_t tenant) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = held_.find(tenant);
    if (it != held_.end() && --it->second == 0) held_.erase(it);
  }

  const uint32_t max_;  // 0: no limit
  const std::string what_;
  const std::string flag_;
  std::mutex mu_;
  absl::flat_hash_map<uint32_t, uint32_t> held_;  // guarded by mu_
};

}  // namespace mk::server

#endif  // MK_SERVER_SRC_TENANT_LIMITER_H_
