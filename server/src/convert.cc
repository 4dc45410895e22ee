#include "convert.h"

#include "absl/strings/str_cat.h"
#include "mk/engine/slot.h"
#include "mk/proto/packed_codec.h"

namespace mk::server {

absl::StatusOr<std::vector<engine::SlotPayload>> DecodePublish(const v1::PublishRequest& request) {
  std::vector<engine::SlotPayload> out;
  switch (request.payload_case()) {
    case v1::PublishRequest::kSlots: {
      const auto& slots = request.slots().slots();
      out.resize(slots.size());
      for (int i = 0; i < slots.size(); ++i) {
        const v1::Slot& s = slots[i];
        if (s.args_size() > static_cast<int>(protocol::kArgWords)) {
          return absl::InvalidArgumentError(absl::StrCat("slot ", i, ": args has ", s.args_size(),
                                                         " words; a slot carries at most 12"));
        }
        out[i].opcode = s.opcode();
        out[i].priority = s.has_priority() ? s.priority() : protocol::kDefaultPriority;
        std::copy(s.args().begin(), s.args().end(), out[i].args.begin());
      }
      break;
    }
    case v1::PublishRequest::kPackedSlots: {
      const std::string& bytes = request.packed_slots();
      if (absl::Status s = proto::CheckPackedSize(bytes.size(), "packed_slots", "slots"); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(s.message(), "; send N x 64 bytes"));
      }
      out.resize(bytes.size() / proto::kPackedBytes);
      for (size_t i = 0; i < out.size(); ++i) {
        const proto::PackedSlot slot =
            proto::DecodePackedSlot(bytes.data() + i * proto::kPackedBytes);
        out[i].opcode = slot.opcode;
        out[i].priority = slot.priority;
        out[i].args = slot.args;
      }
      break;
    }
    case v1::PublishRequest::PAYLOAD_NOT_SET:
      break;
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        "publish: no slots; set `slots` (typed) or `packed_slots` (N x 64 bytes)");
  }
  return out;
}

void ToProto(const engine::Completion& c, v1::Completion* out) {
  out->set_ticket(c.ticket);
  switch (c.status) {
    case engine::CompletionStatus::kDone:
      out->set_status(v1::COMPLETION_STATUS_DONE);
      out->mutable_result()->Add(c.results.begin(), c.results.end());
      break;
    case engine::CompletionStatus::kFault:
      out->set_status(v1::COMPLETION_STATUS_FAULT);
      out->set_fault_code(c.fault_code);
      out->set_fault_detail(c.fault_detail);
      break;
    case engine::CompletionStatus::kCancelled:
      out->set_status(v1::COMPLETION_STATUS_CANCELLED);
      break;
  }
}

void AppendPacked(const engine::Completion& c, char* image) {
  proto::PackedCompletion packed;
  packed.ticket = c.ticket;
  switch (c.status) {
    case engine::CompletionStatus::kDone:
      packed.status = proto::PackedStatus::kDone;
      packed.words = c.results;
      break;
    case engine::CompletionStatus::kFault:
      packed.status = proto::PackedStatus::kFault;
      packed.words[0] = c.fault_code;
      packed.words[1] = c.fault_detail;
      break;
    case engine::CompletionStatus::kCancelled:
      packed.status = proto::PackedStatus::kCancelled;
      break;
  }
  proto::EncodePackedCompletion(packed, image);
}

void ToProto(const engine::TelemetrySnapshot& t, const engine::WatchdogReport& watchdog,
             const engine::EngineInfo& info, v1::Telemetry* out) {
  auto* occ = out->mutable_occupancy();
  for (uint32_t s = 0; s < protocol::kSlotStatusCount; ++s) {
    (*occ->mutable_by_status())[engine::SlotStatusName(static_cast<protocol::SlotStatus>(s))] =
        t.occupancy.by_status[s];
  }
  occ->set_total(t.occupancy.total);
  occ->set_queue_depth(t.occupancy.queue_depth);
  out->set_done_count(t.control.done_count);
  out->set_epoch(t.control.epoch);
  for (const auto& [op, n] : t.control.opcode_metrics) (*out->mutable_opcode_metrics())[op] = n;
  out->mutable_tenant_fairness()->Add(t.control.tenant_fairness.begin(),
                                      t.control.tenant_fairness.end());
  out->mutable_priority_fairness()->Add(t.control.priority_fairness.begin(),
                                        t.control.priority_fairness.end());
  auto* w = out->mutable_watchdog();
  w->set_done_delta(watchdog.done_delta);
  w->set_queue_depth(watchdog.queue_depth);
  w->set_faults(watchdog.faults);
  w->set_suspected_stall(watchdog.suspected_stall);
  auto* e = out->mutable_engine();
  e->set_backend(info.backend);
  e->set_device(info.device);
  e->set_ring_slots(info.ring_slots);
  e->set_workers(info.workers);
}

}  // namespace mk::server
