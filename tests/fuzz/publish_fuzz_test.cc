// Randomized hostile input against the publish path (label fuzz; fixed seeds, so a failure
// reproduces): random typed slots and random packed byte strings go through the server's wire
// decoding and the engine's validation into a running CPU engine, with cancellations and an
// engine restart mixed in. Every request is either refused with INVALID_ARGUMENT naming a slot
// (or the request) and a field, or accepted; every accepted slot reaches exactly one terminal
// outcome (DONE, FAULT or CANCELLED), and the engine's counters add up.
#include <cstdio>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "convert.h"
#include "gtest/gtest.h"
#include "mk/engine/engine.h"
#include "mk/v1/megakernel.pb.h"
#include "support/engine_test_util.h"

namespace mk::engine {
namespace {

namespace op = protocol::opcode;
using testing::RecordingSink;

class Fuzzer {
 public:
  explicit Fuzzer(uint32_t seed) : rng_(seed) {}

  uint32_t Below(uint32_t n) { return std::uniform_int_distribution<uint32_t>(0, n - 1)(rng_); }
  uint32_t Any() { return static_cast<uint32_t>(rng_()); }
  // Mostly small values (indexes, counts) with some arbitrary ones.
  uint32_t Word() { return Below(10) < 6 ? Below(24) : Any(); }

  // Any opcode, often one the engine refuses.
  uint32_t HostileOpcode() {
    static constexpr uint32_t kInteresting[] = {
        op::kShutdown, 7, 8, 0xFFEF, 0x10000, 0x7FFFFFFF, 0x80000000, op::kPackedSlot};
    return Below(2) == 0 ? kInteresting[Below(std::size(kInteresting))] : Any();
  }
  // A built-in opcode with arbitrary arguments: accepted, and may fault when it runs.
  uint32_t ValidOpcode() {
    static constexpr uint32_t kBuiltins[] = {
        op::kNop,     op::kStoreU32, op::kAtomicAdd, op::kLoadU32,  op::kCompareSwap, op::kMemcpy,
        op::kDfaStep, op::kPrintf,   op::kChecksum,  op::kLoadMiss, op::kBatchFence};
    return kBuiltins[Below(std::size(kBuiltins))];
  }

  SlotPayload Slot(bool hostile) {
    SlotPayload s;
    s.opcode = hostile ? HostileOpcode() : ValidOpcode();
    s.priority = hostile && Below(2) == 0 ? Any() : Below(protocol::kPriorityCount);
    for (uint32_t& a : s.args) a = Word();
    if (s.opcode == op::kBatchFence && !hostile) s.args[0] = 0;  // no predecessors named
    if (s.opcode == op::kPackedSlot) {  // a plausible inner-op stream, often malformed
      s.args[0] = Below(13);
      for (uint32_t w = 1; w < protocol::kArgWords; ++w) {
        s.args[w] = Below(3) == 0 ? (Below(8) | Below(5) << 16) : Word();
      }
    }
    return s;
  }

  // A batch of 1..47 slots; a quarter of the batches carry one hostile slot somewhere.
  std::vector<SlotPayload> Batch() {
    std::vector<SlotPayload> slots(1 + Below(47));
    const size_t hostile = Below(4) == 0 ? Below(slots.size()) : slots.size();
    for (size_t i = 0; i < slots.size(); ++i) slots[i] = Slot(i == hostile);
    return slots;
  }

  std::string PackedBytes() {
    const std::vector<SlotPayload> batch = Below(10) == 0 ? std::vector<SlotPayload>{} : Batch();
    std::string bytes(batch.size() * protocol::kSlotBytes + (Below(8) == 0 ? Below(64) : 0), '\0');
    for (size_t i = 0; i < batch.size(); ++i) {
      const SlotPayload& s = batch[i];
      uint32_t words[protocol::kSlotWords] = {};
      words[protocol::kWordStatus] = Below(4) == 0 ? Any() : 0;  // ignored by decoding
      words[protocol::kWordOpcode] = s.opcode;
      words[protocol::kWordTenant] = Any();  // the server sets the tenant, never the client
      words[protocol::kWordPriority] = s.priority;
      std::copy(s.args.begin(), s.args.end(), words + protocol::kWordArg0);
      std::memcpy(bytes.data() + i * protocol::kSlotBytes, words, protocol::kSlotBytes);
    }
    for (size_t i = batch.size() * protocol::kSlotBytes; i < bytes.size(); ++i) {
      bytes[i] = static_cast<char>(Any());
    }
    return bytes;
  }

 private:
  std::mt19937 rng_;
};

// Refusals name a slot (or the request) and a field.
void ExpectPreciseRefusal(const absl::Status& s, size_t batch_size) {
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  static const std::regex kSlot("^slot ([0-9]+): [a-z].*");
  static const std::regex kRequest("^(publish|packed_slots): .+");
  std::smatch m;
  const std::string message(s.message());
  if (std::regex_match(message, m, kSlot)) {
    EXPECT_LT(std::stoul(m[1]), batch_size) << message;
  } else {
    EXPECT_TRUE(std::regex_match(message, kRequest)) << "imprecise refusal: " << message;
  }
}

class PublishFuzzTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(PublishFuzzTest, EveryRequestIsRefusedPreciselyOrCompletesExactlyOnce) {
  Fuzzer f(GetParam());
  RecordingSink sink;  // outlives the engine, which delivers to it
  EngineOptions o;
  o.backend = EngineOptions::Backend::kCpu;
  o.workers = 2;
  o.ring_slots = 4096;
  o.max_tenants = 4;
  o.scratch_words = 16;
  auto e = testing::MakeStarted(o);
  ASSERT_NE(e, nullptr);
  std::set<std::pair<uint32_t, uint64_t>> accepted;  // (tenant, ticket): tickets are per tenant
  size_t refused = 0;
  auto publish = [&](uint32_t tenant, const std::vector<SlotPayload>& slots) {
    auto r = testing::PublishWithRetry(*e, tenant, slots, &sink);
    if (!r.ok()) {
      ++refused;
      ExpectPreciseRefusal(r.status(), slots.size());
      return;
    }
    for (uint64_t t : testing::Tickets(*r)) {
      EXPECT_TRUE(accepted.insert({tenant, t}).second) << tenant << "/" << t;
    }
    if (f.Below(10) == 0) {  // cancel some of them, wherever they are by now
      std::vector<uint64_t> some;
      for (uint64_t t : testing::Tickets(*r)) {
        if (f.Below(2) == 0) some.push_back(t);
      }
      if (!some.empty()) EXPECT_TRUE(e->Cancel(tenant, some).ok());
    }
  };
  for (int round = 0; round < 400; ++round) {
    const uint32_t tenant = f.Below(o.max_tenants);
    if (f.Below(2) == 0) {
      publish(tenant, f.Batch());
    } else {
      v1::PublishRequest request;
      request.set_packed_slots(f.PackedBytes());
      auto decoded = server::DecodePublish(request);
      if (!decoded.ok()) {
        ++refused;
        ExpectPreciseRefusal(decoded.status(), request.packed_slots().size() / 64);
        continue;
      }
      ASSERT_EQ(decoded->size() * protocol::kSlotBytes, request.packed_slots().size());
      publish(tenant, *decoded);
    }
    if (round == 200) ASSERT_TRUE(e->Restart().ok()) << "in-flight slots fail, none is lost";
  }
  ASSERT_TRUE(sink.WaitForCount(accepted.size(), absl::Seconds(120)))
      << sink.completions().size() << " of " << accepted.size();
  std::set<std::pair<uint32_t, uint64_t>> finished;
  size_t outcomes[3] = {};  // done, fault, cancelled
  for (const Completion& c : sink.completions()) {
    ++outcomes[c.status == CompletionStatus::kDone    ? 0
               : c.status == CompletionStatus::kFault ? 1
                                                      : 2];
    const std::pair<uint32_t, uint64_t> key{c.tenant, c.ticket};
    EXPECT_TRUE(accepted.contains(key)) << "unknown ticket " << c.tenant << "/" << c.ticket;
    EXPECT_TRUE(finished.insert(key).second)
        << "ticket " << c.tenant << "/" << c.ticket << " completed twice";
    EXPECT_TRUE(c.status == CompletionStatus::kDone || c.status == CompletionStatus::kFault ||
                c.status == CompletionStatus::kCancelled);
  }
  EXPECT_EQ(finished.size(), accepted.size());
  std::printf(
      "# seed %u: %zu slots accepted (%zu done, %zu faulted, %zu cancelled), %zu requests "
      "refused\n",
      GetParam(), accepted.size(), outcomes[0], outcomes[1], outcomes[2], refused);
  EXPECT_GT(outcomes[1], 0u) << "hostile arguments must reach the interpreter too";
  EXPECT_GT(outcomes[2], 0u) << "and cancellations must take effect";
  EXPECT_GT(refused, 20u) << "the generator must produce hostile input";
  EXPECT_GT(accepted.size(), 1000u) << "and plenty of accepted work";
  ASSERT_TRUE(testing::WaitUntil([&] { return e->counters().in_flight == 0; }));
  const EngineCounters n = e->counters();
  EXPECT_EQ(n.accepted, n.done + n.faulted + n.cancelled);
  EXPECT_EQ(n.accepted, accepted.size());
}

INSTANTIATE_TEST_SUITE_P(Seeds, PublishFuzzTest, ::testing::Values(1u, 2u, 3u));

}  // namespace
}  // namespace mk::engine
