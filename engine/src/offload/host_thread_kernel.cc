#include "offload/host_thread_kernel.h"

#include <algorithm>
#include <cstdlib>

#include "mk/base/cpu_relax.h"
#include "mk/base/log.h"
#include "mk/base/status_macros.h"
#include "mk/engine/opcode_registry.h"

namespace mk::engine::offload {

namespace {

// A GPU block marks itself idle after this many polls in a row at its longest backoff.
constexpr uint32_t kIdleAfterPolls = 64;
// Polls with nothing to claim before an idle block starts sleeping (a short spin catches the
// next request of a busy client without a sleep's latency).
constexpr uint32_t kSpinPolls = 256;

}  // namespace

absl::StatusOr<std::unique_ptr<HostThreadKernel>> HostThreadKernel::Create(
    const HostKernelConfig& config, const protocol::control::Layout& layout,
    absl::Span<uint32_t> debug_log, uint32_t debug_log_records, protocol::IoHook checksum) {
  if (config.claim_limit == 0) {
    return absl::InvalidArgumentError("offload: a kernel block must claim at least one entry");
  }
  MK_ASSIGN_OR_RETURN(std::unique_ptr<SubmissionQueues> queues,
                      SubmissionQueues::Create(config.shape));
  return std::unique_ptr<HostThreadKernel>(new HostThreadKernel(
      config, std::move(queues), layout, debug_log, debug_log_records, checksum));
}

HostThreadKernel::HostThreadKernel(const HostKernelConfig& config,
                                   std::unique_ptr<SubmissionQueues> queues,
                                   const protocol::control::Layout& layout,
                                   absl::Span<uint32_t> debug_log, uint32_t debug_log_records,
                                   protocol::IoHook checksum)
    : KernelPort(std::move(queues)), config_(config), control_(layout.TotalWords(), 0) {
  context_.control = control_.data();
  context_.layout = layout;
  context_.debug_log = debug_log.data();
  context_.debug_log_records = debug_log_records;
  context_.io.context = checksum.context;
  context_.io.checksum = checksum.checksum;
  // This kernel holds no resources (no residency table): every LOAD_MISS asks the host.
  context_.io.load_miss = [](void*, uint32_t, uint32_t, const uint32_t*) {
    protocol::ExecResult r;
    r.status = static_cast<protocol::SlotStatus>(kAskHostStatus);
    return r;
  };
}

HostThreadKernel::~HostThreadKernel() {
  queues().RequestStop();
  std::vector<std::thread> blocks;
  {
    std::unique_lock<std::mutex> lock(mu_);
    exited_.wait(lock, [this] { return running_ == 0; });
    blocks.swap(blocks_);
  }
  for (std::thread& t : blocks) t.join();
}

void HostThreadKernel::JoinExited() {
  std::vector<std::thread> blocks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_ != 0) return;
    blocks.swap(blocks_);
  }
  for (std::thread& t : blocks) t.join();
}

absl::Status HostThreadKernel::Launch(const uint64_t* first_positions) {
  JoinExited();
  std::lock_guard<std::mutex> lock(mu_);
  if (running_ != 0) {
    return absl::FailedPreconditionError(
        "offload: launch while the host-thread kernel still runs; stop it first");
  }
  for (uint32_t s = 0; s < config_.shape.shards; ++s) {
    claim_[s].store(first_positions[s], std::memory_order_relaxed);
  }
  queues().ResetForLaunch(first_positions);
  running_ = config_.shape.blocks;
  for (uint32_t b = 0; b < config_.shape.blocks; ++b) {
    blocks_.emplace_back([this, b] { BlockLoop(b); });
  }
  return absl::OkStatus();
}

absl::Status HostThreadKernel::WaitStopped(absl::Time deadline) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!exited_.wait_until(lock, absl::ToChronoTime(deadline), [this] { return running_ == 0; })) {
      return absl::DeadlineExceededError("offload: the host-thread kernel did not stop when asked");
    }
  }
  JoinExited();
  return absl::OkStatus();
}

absl::Status HostThreadKernel::KernelState() {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_ != 0) return absl::OkStatus();
  return absl::FailedPreconditionError("offload: the host-thread kernel is not running");
}

void HostThreadKernel::BlockLoop(uint32_t block) {
  const uint32_t shard = block % config_.shape.shards;
  protocol::ExecContext ctx = context_;
  uint32_t empty_polls = 0;
  absl::Duration nap = absl::Microseconds(1);
  bool idle = false;
  for (;;) {
    const ShardDoorbell bell = queues().ReadDoorbell(shard);
    if (bell.stop != 0) break;
    uint64_t begin = 0, end = 0;
    if (bell.paused == 0 && Claim(shard, bell.sq_tail, &begin, &end)) {
      // Awake before anything it runs completes, as a GPU block clears its flag on a claim.
      if (idle) queues().SetBlockIdle(block, idle = false);
      for (uint64_t position = begin; position < end; ++position) RunEntry(shard, position, ctx);
      empty_polls = 0;
      nap = absl::Microseconds(1);
      continue;
    }
    // Nothing to claim: spin a little, then sleep ever longer, up to the longest backoff.
    if (++empty_polls < kSpinPolls) {
      base::CpuRelax();
      continue;
    }
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(nap));
    if (nap < config_.max_backoff) {
      nap = std::min(nap * 2, config_.max_backoff);
    } else if (!idle && empty_polls >= kSpinPolls + kIdleAfterPolls) {
      queues().SetBlockIdle(block, idle = true);
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  --running_;
  exited_.notify_all();
}

bool HostThreadKernel::Claim(uint32_t shard, uint64_t tail, uint64_t* begin, uint64_t* end) {
  uint64_t c = claim_[shard].load(std::memory_order_acquire);
  while (c < tail) {
    const uint64_t n = std::min<uint64_t>(tail - c, config_.claim_limit);
    if (claim_[shard].compare_exchange_weak(c, c + n, std::memory_order_acq_rel)) {
      *begin = c;
      *end = c + n;
      return true;
    }
  }
  return false;
}

void HostThreadKernel::RunEntry(uint32_t shard, uint64_t position, protocol::ExecContext& ctx) {
  // The doorbell read that showed this entry came first (acquire): its words are complete.
  const uint64_t* entry = queues().entry(shard, position);
  uint32_t w[kEntryWords];
  for (uint32_t i = 0; i < kEntryWords; ++i) w[i] = static_cast<uint32_t>(entry[i]);
  CheckEntryTags(shard, position, entry);
  const uint32_t ring_index = w[kEntryRingIndex] & ~kEntryLastOfDispatch;
  WriteCompletion(shard, position, protocol::Execute<protocol::ProductOpcodes>(w, ring_index, ctx));
}

void HostThreadKernel::CheckEntryTags(uint32_t shard, uint64_t position, const uint64_t* entry) {
  // The dispatcher writes every word of an entry with the entry's tag (or the held tag while
  // paused) and reuses an entry only after its slot was reaped. Another tag means the host
  // overwrote an entry still in use: a bug in the dispatcher, and on a GPU a slot run with
  // another slot's words. Stop here, loudly.
  const uint32_t tag = static_cast<uint32_t>(entry[0] >> 32);
  bool consistent = tag == PositionTag(position) || tag == kHeldEntryTag;
  for (uint32_t i = 1; i < kEntryWords && consistent; ++i) {
    consistent = static_cast<uint32_t>(entry[i] >> 32) == tag;
  }
  if (consistent) return;
  base::LogError("offload: submission entry ", position, " of shard ", shard, " carries tag ", tag,
                 " (expected ", PositionTag(position), " or the held tag ", kHeldEntryTag,
                 ", the same in every word): the dispatcher reused an entry in use");
  std::abort();
}

void HostThreadKernel::WriteCompletion(uint32_t shard, uint64_t position,
                                       const protocol::ExecResult& r) {
  uint64_t* record = queues().mutable_completion(shard, position);
  const uint32_t tag = PositionTag(position);
  const uint32_t count = std::min(r.result_count, protocol::kArgWords);
  // The worst order a GPU's unfenced stores can reach the host in: STATUS first, the result
  // words after it, so the reaper's wait for each result word's tag runs (relaxed: nothing
  // orders them, as nothing does on the GPU; each word is still single-copy atomic).
  std::atomic_ref<uint64_t>(record[0]).store(
      TaggedWord(tag, static_cast<uint32_t>(r.status) | count << 8), std::memory_order_release);
  for (uint32_t i = 0; i < count; ++i) {
    std::atomic_ref<uint64_t>(record[1 + i])
        .store(TaggedWord(tag, r.results[i]), std::memory_order_relaxed);
  }
}

}  // namespace mk::engine::offload
