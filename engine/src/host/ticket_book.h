// TicketBook: every tenant's tickets (docs/protocol.md, "Tickets"): a per-tenant counter from 1;
// a publish of N slots takes N consecutive tickets. The publisher issues them while it holds
// the ring's reservation (PartitionedRing::Reservation), so a tenant's tickets follow the order
// in which its slots enter the ring.
//
// Thread safety: Issue needs the ring's reservation held (one issuer at a time); Issued and
// CheckIssued may run on any thread at any time.
#ifndef MK_ENGINE_SRC_HOST_TICKET_BOOK_H_
#define MK_ENGINE_SRC_HOST_TICKET_BOOK_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace mk::engine::host {

class TicketBook {
 public:
  explicit TicketBook(uint32_t max_tenants);

  // Takes `count` tickets of `tenant`; returns the first.
  uint64_t Issue(uint32_t tenant, uint64_t count) {
    const uint64_t first = last_[tenant].load(std::memory_order_relaxed) + 1;
    last_[tenant].store(first + count - 1, std::memory_order_release);
    return first;
  }
  // The last ticket issued to `tenant` (0: none yet).
  uint64_t Issued(uint32_t tenant) const { return last_[tenant].load(std::memory_order_acquire); }
  // INVALID_ARGUMENT naming the first of `tickets` that `tenant` was never issued.
  absl::Status CheckIssued(uint32_t tenant, absl::Span<const uint64_t> tickets) const;

 private:
  std::unique_ptr<std::atomic<uint64_t>[]> last_;  // per tenant
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_TICKET_BOOK_H_
