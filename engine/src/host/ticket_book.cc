#include "host/ticket_book.h"

#include "absl/strings/str_cat.h"

namespace mk::engine::host {

TicketBook::TicketBook(uint32_t max_tenants) : last_(new std::atomic<uint64_t>[max_tenants]) {
  for (uint32_t t = 0; t < max_tenants; ++t) last_[t].store(0, std::memory_order_relaxed);
}

absl::Status TicketBook::CheckIssued(uint32_t tenant, absl::Span<const uint64_t> tickets) const {
  const uint64_t issued = Issued(tenant);
  for (size_t i = 0; i < tickets.size(); ++i) {
    if (tickets[i] == 0 || tickets[i] > issued) {
      return absl::InvalidArgumentError(absl::StrCat("engine: tickets[", i, "] = ", tickets[i],
                                                     " was never issued to tenant ", tenant,
                                                     " (tickets issued so far: 1..", issued, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace mk::engine::host
