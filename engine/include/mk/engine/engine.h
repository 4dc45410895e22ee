// The abstract engine: what the server (and tests) see of the CPU and CUDA engines.
//
// Lifetime: Create an engine through CreateEngine, Start it, publish and wait; Drain or Shutdown
// before destroying it (the destructor shuts down without drain if neither was called).
// Thread safety: every method may be called from any thread concurrently, except Start, which is
// called once before anything else that waits on work.
//
// Ordering contract:
// - Every accepted slot gets a ticket (per tenant, monotonically increasing from 1; a batch of N
//   slots gets N consecutive tickets) and reaches exactly one terminal outcome: DONE, FAULT or
//   CANCELLED. That holds across Cancel, Drain, Shutdown and tenant disable.
// - Within a priority class slots are claimed in publish order; a higher class is claimed before
//   a lower one, except that after 16 consecutive CRITICAL/HIGH claims the next claim prefers the
//   lower classes (the starvation guard, control word 135).
// - BATCH_FENCE(count, tag) completes only after the `count` slots before it in the same Publish
//   call are terminal; then EPOCH += 1 and its result0 = tag.
#ifndef MK_ENGINE_ENGINE_H_
#define MK_ENGINE_ENGINE_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mk/engine/debug_log.h"
#include "mk/engine/engine_stats.h"
#include "mk/engine/protocol.h"
#include "mk/engine/slot.h"
#include "mk/engine/telemetry.h"

namespace mk::engine {

enum class CompletionStatus : uint32_t { kDone = 1, kFault = 2, kCancelled = 3 };

struct Completion {
  uint32_t tenant = 0;
  uint32_t opcode = 0;
  uint64_t ticket = 0;
  CompletionStatus status = CompletionStatus::kDone;
  uint32_t fault_code = 0;    // FAULT: protocol::FaultCode
  uint32_t fault_detail = 0;  // FAULT: detail word (ARG1)
  // DONE: the slot's 12 result words; words the opcode does not produce are zero.
  std::array<uint32_t, protocol::kArgWords> results{};
};

// Receives completions, in batches, on an engine thread (a worker or the thread that cancelled
// or shut down). Implementations must be thread-safe and must not block: hand the batch off.
// Lifetime: a sink must stay valid until every slot published with it has completed.
class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  virtual void OnCompletions(absl::Span<const Completion> batch) = 0;
};

struct PublishOptions {
  // Where completions go. nullptr: they are kept by the engine until collected with WaitFor.
  CompletionSink* sink = nullptr;
};

struct PublishResult {
  uint64_t first_ticket = 0;
  uint32_t count = 0;
};

struct EngineInfo {
  std::string backend;  // "cpu", "cuda" or "cuda-emulated"
  std::string device;   // human-readable executor description
  uint32_t ring_slots = 0;
  uint32_t workers = 0;
  uint32_t max_tenants = 0;
  uint32_t scratch_words = 0;
};

// Outcome totals since Create. accepted == done + faulted + cancelled + in_flight.
struct EngineCounters {
  uint64_t accepted = 0;
  uint64_t done = 0;
  uint64_t faulted = 0;
  uint64_t cancelled = 0;
  uint64_t in_flight = 0;
  uint64_t stored_completions = 0;   // completed, not yet collected by WaitFor
  uint64_t expired_completions = 0;  // stored longer than completion_ttl, dropped uncollected
  uint64_t parked_slots = 0;         // in flight but held: slots of disabled tenants
  uint32_t parked_workers = 0;       // workers asleep for lack of work
  uint32_t done_count = 0;           // control word DONE_COUNT (executor progress; wraps)
  // Bytes of resource io landed plus bytes hashed on the host: progress of long io-bound work
  // before its slots complete (the watchdog counts it as progress).
  uint64_t io_progress_bytes = 0;
};

// The owner of resources in the resource root's shared/ folder: the admin registers them (as
// this owner), every tenant may read them, only this owner evicts them.
inline constexpr uint32_t kSharedResourceOwner = 0xFFFFFFFFu;

struct ResourceInfo {
  uint32_t id = 0;
  uint32_t tenant = 0;  // the owner: a tenant, or kSharedResourceOwner
  std::string path;
  uint64_t offset = 0;
  uint64_t length = 0;
  bool resident = false;
};

// A tenant buffer (docs/buffers.md): `handle` names it in buffer calls and in opcode arguments
// (protocol::buffer); only the tenant that created it can use it.
struct BufferInfo {
  uint32_t handle = 0;
  uint64_t bytes = 0;
};

struct EngineOptions {
  // kCudaEmulated: the CUDA engine's host side with host threads in the GPU kernel's place (a
  // test vehicle: it runs the CUDA dispatcher and reapers without a GPU and under
  // ThreadSanitizer). kAuto never picks it.
  enum class Backend { kAuto, kCpu, kCuda, kCudaEmulated };
  Backend backend = Backend::kAuto;
  uint32_t ring_slots = 1u << 16;
  uint32_t workers = 0;  // 0: one per core, minus one for producers (at least 1)
  uint32_t max_tenants = 1024;
  uint32_t scratch_words = 64;
  uint32_t debug_log_records = 1024;
  // Most slots a worker claims at once from a priority partition (1..1024). A claim takes only
  // what is published, so small requests are not delayed; large claims cut per-batch costs
  // (docs/performance.md).
  uint32_t claim_batch = 1024;
  // Share of the ring per priority class CRITICAL..IDLE (relative weights, each >= 1).
  std::array<uint32_t, protocol::kPriorityCount> partition_weights = {1, 2, 8, 3, 2};
  // How long an idle worker keeps polling for work before it parks (then a publish must wake
  // it, which costs a futex wake-up). Longer: lower latency for sparse requests, more CPU
  // right after a burst. The engine parks completely once this has passed without work.
  absl::Duration idle_spin = absl::Microseconds(200);
  // Resource loading (LOAD_MISS / CHECKSUM). Empty root: no resources, both opcodes fault
  // RESOURCE_NOT_FOUND. A tenant's paths are relative to <root>/tenants/<tenant>/, shared
  // resources' to <root>/shared/ (mk/io/resource_table.h).
  std::string resource_root;
  uint64_t residency_budget_bytes = 1ull << 30;  // resident copies; LRU eviction beyond it
  // Resident bytes one owner (tenant, or the shared folder) may hold; its loads evict only its
  // own copies. 0: the whole budget (no tenant evicts another's copies even then).
  uint64_t tenant_residency_bytes = 256ull << 20;
  // Resources one owner may have registered at once (0 = no limit).
  uint32_t max_resources_per_tenant = 1024;
  // Tenant buffers: bytes and buffers one tenant may hold (0 = no limit), and bytes all
  // tenants' buffers may hold together (0 = no limit).
  uint64_t tenant_buffer_bytes = 1ull << 30;
  uint32_t max_buffers_per_tenant = 1024;
  uint64_t buffer_budget_bytes = 8ull << 30;
  std::string io_backend = "auto";  // auto | io_uring | threads
  // Read resources with O_DIRECT (bypassing the page cache); resource offsets and lengths must
  // then be multiples of 4096, or their loads fail with EINVAL.
  bool io_direct = false;
  uint32_t io_queue_slots = 64;
  // Record the latency histograms (one clock read per publish call and per reap pass).
  bool collect_latency = true;
  // Completions kept for WaitFor before Publish answers RESOURCE_EXHAUSTED (poll them): in
  // all, and per tenant (0 = no per-tenant limit), so one tenant cannot use up everyone's room.
  uint64_t max_stored_completions = 1u << 22;
  uint64_t max_stored_completions_per_tenant = 1u << 20;
  // A completion nobody collects within this long is dropped (counted in
  // EngineCounters::expired_completions): forgotten tickets do not hold memory forever.
  absl::Duration completion_ttl = absl::Minutes(10);
  // Slots one tenant may have in flight (published, not yet completed) over all priorities;
  // 0: no fixed cap. Independently of it, a tenant holds at most its fair share of a contended
  // partition (docs/security.md, "Fair share of the ring").
  uint64_t max_outstanding_slots_per_tenant = 0;
  // The fair-share rule itself; off only to measure what it prevents (tenancy_bench).
  bool fair_share = true;
  // The most of a priority partition one tenant may hold (0 < share <= 15/16; the last
  // sixteenth is always headroom). A slot admitted into a partition waits behind at most this
  // much of it: lower bounds other tenants' queueing behind a flooder, at the cost of one
  // tenant's depth (docs/security.md).
  double max_tenant_partition_share = 15.0 / 16.0;

  // The CUDA engine (and, where it applies, the cuda-emulated engine). The defaults are what
  // production runs; docs/performance.md shows what each changes.
  struct Cuda {
    // Submission queues, each with its own reaper thread (1..8, at most one per block); 0: one
    // per kernel block.
    uint32_t submission_queues = 0;
    // Each block's last four warps probe for lone requests between the poller's reads (a lower
    // one-slot round trip); off, every thread is a worker. CUDA only.
    bool scout_warps = true;
    // An idle poller's longest nap between doorbell reads: the idle kernel's PCIe read rate
    // against the latency of the first request after a pause. CUDA only.
    uint32_t max_backoff_ns = 250;
    // How long a kernel asked to stop may take before it counts as unresponsive (it is then
    // abandoned and the engine executes nothing more). Raise it under compute-sanitizer.
    absl::Duration stop_timeout = absl::Seconds(2);
    // Publishers dispatch every publish themselves, instead of handing publishes of more than
    // 8 slots to a reaper (for measurements).
    bool inline_dispatch = false;
  };
  Cuda cuda;
};

absl::StatusOr<EngineOptions::Backend> ParseBackend(absl::string_view name);

class Engine {
 public:
  virtual ~Engine() = default;

  virtual absl::Status Start() = 0;

  // Validates every slot (opcode registered, priority 0..4, BATCH_FENCE count within the batch,
  // PACKED_SLOT inner ops) and publishes all of them or none. The tenant comes from the caller's
  // credentials; payload.tenant is overwritten. Errors: INVALID_ARGUMENT naming the slot and
  // field; RESOURCE_EXHAUSTED with a retry hint when the slots' priority partition is full;
  // FAILED_PRECONDITION for a disabled tenant; UNAVAILABLE while draining or shut down.
  virtual absl::StatusOr<PublishResult> Publish(uint32_t tenant,
                                                absl::Span<const SlotPayload> slots,
                                                const PublishOptions& options) = 0;

  // Collects the completions of `tickets` (published without a sink), waiting until all of them
  // are complete or `deadline` passes; returns those complete by then, removing them from the
  // engine. INVALID_ARGUMENT for a ticket this tenant was never issued.
  virtual absl::StatusOr<std::vector<Completion>> WaitFor(uint32_t tenant,
                                                          absl::Span<const uint64_t> tickets,
                                                          absl::Time deadline) = 0;

  // Asynchronous WaitFor: never blocks. `done` runs exactly once, on an engine thread (or on
  // the calling thread when everything is complete already), with the completions of `tickets`
  // as soon as all are complete, or at `deadline` with those complete by then. It must not
  // block. Errors (never-issued ticket) are returned and `done` is not called. Returns the
  // wait's id for EndWait.
  using CompletionsCallback = std::function<void(std::vector<Completion>)>;
  using WaitId = uint64_t;
  virtual absl::StatusOr<WaitId> WaitForAsync(uint32_t tenant, absl::Span<const uint64_t> tickets,
                                              absl::Time deadline, CompletionsCallback done) = 0;
  // Ends wait `id` now (its caller went away): `done` runs at once with what it collected,
  // and the wait holds nothing any more. No effect on a wait that finished already. A caller
  // that cannot deliver what `done` got hands it back with ReturnCompletions, from within
  // `done`: what `done` kept is remembered as collected when it returns, and WaitFor /
  // WaitForAsync for such a ticket are then NOT_FOUND at once.
  virtual void EndWait(WaitId id) = 0;

  // Gives completions taken by a wait that could not deliver them (its RPC was cancelled or
  // timed out) back to the engine, so WaitFor / WaitForAsync find them again.
  virtual void ReturnCompletions(absl::Span<const Completion> completions) = 0;

  // Cancels tickets whose slots no worker has claimed; they complete as CANCELLED. Returns how
  // many were cancelled (claimed or finished ones are left to complete normally).
  virtual absl::StatusOr<uint32_t> Cancel(uint32_t tenant, absl::Span<const uint64_t> tickets) = 0;

  // Disabled tenants' published slots stay PUBLISHED (unclaimed) until re-enabled or cancelled;
  // new publishes from them get FAILED_PRECONDITION.
  virtual absl::Status SetTenantEnabled(uint32_t tenant, bool enabled) = 0;

  // Decodes telemetry from the live ring and control buffer into caller-owned storage.
  virtual absl::Status Telemetry(absl::Span<const uint32_t> window_opcodes,
                                 TelemetrySnapshot* out) = 0;
  // Decodes the PRINTF debug log (records and overflow count) into caller-owned storage.
  virtual absl::Status ReadDebugLog(DebugLogContents* out) = 0;

  // Stops accepting work, cancels slots of disabled tenants, and waits until every accepted
  // slot is terminal. DEADLINE_EXCEEDED if work remains at `deadline` (the engine keeps
  // draining; call again or Shutdown).
  virtual absl::StatusOr<EngineCounters> Drain(absl::Time deadline) = 0;
  // Stops the executor. Slots not yet terminal complete as FAULT(ENGINE_RESTART).
  virtual absl::StatusOr<EngineCounters> Shutdown() = 0;

  // The resource table behind LOAD_MISS (FAILED_PRECONDITION without a resource root).
  // Resources belong to the registering tenant, whose paths are relative to its own folder
  // <root>/tenants/<tenant>/; other tenants' LOAD_MISS / CHECKSUM of them fault
  // RESOURCE_NOT_FOUND. `tenant` may be kSharedResourceOwner (the admin's call): paths are then
  // relative to <root>/shared/ and every tenant may use the resource; listing shows a tenant
  // its own resources and the shared ones; a tenant evicts only its own.
  virtual absl::StatusOr<uint32_t> RegisterResource(uint32_t tenant, const std::string& path,
                                                    uint64_t offset, uint64_t length) = 0;
  virtual absl::StatusOr<std::vector<ResourceInfo>> ListResources(uint32_t tenant) = 0;
  // Drops the resource and its resident copy; FAILED_PRECONDITION while it is loading.
  virtual absl::Status EvictResource(uint32_t tenant, uint32_t resource_id) = 0;

  // Tenant buffers (docs/buffers.md). CreateBuffer: `bytes` zero-filled bytes, counted
  // against the tenant's quota (RESOURCE_EXHAUSTED with the numbers when over it). Write and
  // Read copy a byte range (OUT_OF_RANGE past the end). A handle is usable only by the tenant
  // that created it: any other tenant's call, and any call after FreeBuffer, is NOT_FOUND.
  virtual absl::StatusOr<BufferInfo> CreateBuffer(uint32_t tenant, uint64_t bytes) = 0;
  virtual absl::Status WriteBuffer(uint32_t tenant, uint32_t handle, uint64_t offset,
                                   absl::Span<const char> bytes) = 0;
  // ReadBuffer also reads a resident resource by its id (read-only; docs/buffers.md).
  virtual absl::Status ReadBuffer(uint32_t tenant, uint32_t handle, uint64_t offset,
                                  absl::Span<char> out) = 0;
  virtual absl::Status FreeBuffer(uint32_t tenant, uint32_t handle) = 0;
  virtual absl::StatusOr<std::vector<BufferInfo>> ListBuffers(uint32_t tenant) = 0;

  // Recovery (the watchdog's): stops the executor, fails every slot not yet terminal with
  // FAULT(ENGINE_RESTART), and starts a fresh executor. Accepting continues.
  virtual absl::Status Restart() = 0;
  virtual EngineCounters counters() const = 0;
  virtual void Stats(EngineStats* out) const = 0;
  virtual EngineInfo info() const = 0;
};

// The one place a backend is chosen: kAuto picks CUDA when this build has the CUDA engine and a
// usable device is present, else the CPU engine.
absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(const EngineOptions& options);

// OK when CreateEngine can build `backend` on this machine; UNAVAILABLE saying why not (no CUDA
// in this build, no device, driver missing). Tests use it to skip GPU cases with the reason.
absl::Status BackendAvailable(EngineOptions::Backend backend);

const char* CompletionStatusName(CompletionStatus status);

}  // namespace mk::engine

#endif  // MK_ENGINE_ENGINE_H_
