// Engine statistics the metrics layer reads at scrape time: outcome counters per tenant and
// opcode class, and latency histograms. Recorded by the engine in aggregated form (per publish
// call, per reap pass, per claimed batch), never per slot into a shared structure.
#ifndef MK_ENGINE_ENGINE_STATS_H_
#define MK_ENGINE_ENGINE_STATS_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "mk/engine/protocol.h"

namespace mk::engine {

// Bucket upper bounds, 1 us .. 1 s (the +Inf bucket follows).
inline constexpr std::array<uint64_t, 19> kLatencyBoundsNs = {
    1'000,      2'500,       5'000,       10'000,      25'000,       50'000,     100'000,
    250'000,    500'000,     1'000'000,   2'500'000,   5'000'000,    10'000'000, 25'000'000,
    50'000'000, 100'000'000, 250'000'000, 500'000'000, 1'000'000'000};
inline constexpr size_t kLatencyBuckets = kLatencyBoundsNs.size() + 1;

struct LatencyHistogram {
  std::array<uint64_t, kLatencyBuckets> buckets{};
  uint64_t sum_ns = 0;

  void Add(uint64_t ns) {
    const size_t b = std::lower_bound(kLatencyBoundsNs.begin(), kLatencyBoundsNs.end(), ns) -
                     kLatencyBoundsNs.begin();
    ++buckets[b];
    sum_ns += ns;
  }
  uint64_t count() const {
    uint64_t n = 0;
    for (uint64_t b : buckets) n += b;
    return n;
  }
  bool empty() const { return sum_ns == 0 && count() == 0; }
  void Clear() { *this = LatencyHistogram{}; }
};

// Records (now - publish time) into a local histogram for many slots at one `now`. Slots of one
// Publish call share their publish time, so the bucket search runs once per run of equal
// publish times instead of once per slot.
class LatencyRecorder {
 public:
  explicit LatencyRecorder(LatencyHistogram* h) : h_(h) {}
  void SetNow(uint64_t now_ns) {
    now_ns_ = now_ns;
    memo_publish_ns_ = UINT64_MAX;
  }
  void Record(uint64_t publish_ns) {
    if (publish_ns != memo_publish_ns_) {
      memo_publish_ns_ = publish_ns;
      memo_ns_ = now_ns_ > publish_ns ? now_ns_ - publish_ns : 0;
      memo_bucket_ = std::lower_bound(kLatencyBoundsNs.begin(), kLatencyBoundsNs.end(), memo_ns_) -
                     kLatencyBoundsNs.begin();
    }
    ++h_->buckets[memo_bucket_];
    h_->sum_ns += memo_ns_;
  }

 private:
  LatencyHistogram* h_;
  uint64_t now_ns_ = 0;
  uint64_t memo_publish_ns_ = UINT64_MAX;
  uint64_t memo_ns_ = 0;
  size_t memo_bucket_ = 0;
};

// A histogram many threads add whole local histograms into. Sharded so that threads merging
// concurrently (one per executor) do not bounce the same cache lines; Snapshot sums the shards.
class SharedLatencyHistogram {
 public:
  void Merge(const LatencyHistogram& h) {
    Shard& shard = shards_[ShardIndex()];
    for (size_t b = 0; b < kLatencyBuckets; ++b) {
      if (h.buckets[b] != 0) shard.buckets[b].fetch_add(h.buckets[b], std::memory_order_relaxed);
    }
    shard.sum_ns.fetch_add(h.sum_ns, std::memory_order_relaxed);
  }
  void Snapshot(LatencyHistogram* out) const {
    *out = LatencyHistogram{};
    for (const Shard& shard : shards_) {
      for (size_t b = 0; b < kLatencyBuckets; ++b) {
        out->buckets[b] += shard.buckets[b].load(std::memory_order_relaxed);
      }
      out->sum_ns += shard.sum_ns.load(std::memory_order_relaxed);
    }
  }

 private:
  static constexpr size_t kShards = 16;
  struct alignas(64) Shard {
    std::array<std::atomic<uint64_t>, kLatencyBuckets> buckets{};
    std::atomic<uint64_t> sum_ns{0};
  };
  static size_t ShardIndex() {
    static std::atomic<size_t> next{0};
    thread_local const size_t index = next.fetch_add(1, std::memory_order_relaxed) % kShards;
    return index;
  }
  std::array<Shard, kShards> shards_{};
};

enum class OpcodeClass : uint32_t { kScratch = 0, kControl = 1, kIo = 2, kCustom = 3 };
inline constexpr uint32_t kOpcodeClassCount = 4;

inline OpcodeClass OpcodeClassOf(uint32_t op) {
  namespace o = protocol::opcode;
  if (op <= o::kDfaStep) return OpcodeClass::kScratch;
  if (op == o::kLoadMiss || op == o::kChecksum) return OpcodeClass::kIo;
  if (op == o::kBatchFence || op == o::kPrintf || op == o::kPackedSlot) {
    return OpcodeClass::kControl;
  }
  return OpcodeClass::kCustom;
}
inline const char* OpcodeClassName(OpcodeClass c) {
  switch (c) {
    case OpcodeClass::kScratch:
      return "scratch";
    case OpcodeClass::kControl:
      return "control";
    case OpcodeClass::kIo:
      return "io";
    case OpcodeClass::kCustom:
      return "custom";
  }
  return "unknown";
}

enum class Outcome : uint32_t { kPublished = 0, kDone = 1, kFaulted = 2, kCancelled = 3 };
inline constexpr uint32_t kOutcomeCount = 4;

// The resource loader's counters (all zero when no resource root is configured).
struct IoStats {
  const char* backend = "none";  // "io_uring", "threads" or "none"
  uint64_t requests_ok = 0;
  uint64_t requests_error = 0;
  uint64_t bytes = 0;
  uint64_t load_misses = 0;    // LOAD_MISS slots executed
  uint64_t coalesced = 0;      // misses that joined a load already under way
  uint64_t requeued = 0;       // misses answered REQUEUE (the owner's budget held by its own loads)
  uint64_t io_queue_full = 0;  // loads that waited in the loader for room in the io queue
  uint64_t evictions = 0;
  uint64_t resident_bytes = 0;
  uint64_t resident_resources = 0;
  uint64_t loading_resources = 0;
  uint64_t registered_resources = 0;
  LatencyHistogram latency;  // io request published -> read complete
};

struct EngineStats {
  // [tenant][opcode class][outcome], totals since Create.
  std::vector<std::array<std::array<uint64_t, kOutcomeCount>, kOpcodeClassCount>> by_tenant;
  LatencyHistogram latency;     // publish -> completion reaped
  LatencyHistogram queue_wait;  // publish -> claimed by an executor
  uint64_t restarts = 0;
  // Executor launches: worker-pool starts on the CPU engine, persistent-kernel launches on the
  // CUDA engine (one at Start, one per restart; never one per request).
  uint64_t executor_starts = 0;
  IoStats io;
};

}  // namespace mk::engine

#endif  // MK_ENGINE_ENGINE_STATS_H_
