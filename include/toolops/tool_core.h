// include/toolops/tool_core.h
//
// ToolCore: everything ToolOps does around one tool, at the level of bytes.
// The typed wrappers in tool.h and asio.h encode arguments into a key and
// results into Bytes, and hand both to a ToolCore, which runs one call end to
// end: cache lookup, freshness, coalescing, admission (breaker, limiter),
// attempts with timeouts, retries under a budget, stale-if-error, fallback,
// and counting.
//
// A ToolCore is created once per wrapped tool (Create() validates the policy)
// and shared by every copy of the wrapper; it is safe for concurrent use.
// Blocking calls run on the caller's thread, except attempts with a timeout,
// which run on the environment's executor so that the caller can stop waiting.

#ifndef TOOLOPS_TOOL_CORE_H_
#define TOOLOPS_TOOL_CORE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "toolops/bytes.h"
#include "toolops/clock.h"
#include "toolops/environment.h"
#include "toolops/function_ref.h"
#include "toolops/policy.h"
#include "toolops/stats.h"
#include "toolops/status.h"
#include "toolops/store.h"

namespace toolops {

// What a tool can learn about the call it is serving. In blocking tools,
// CurrentCall() returns it (null outside a wrapped call).
struct CallContext {
  std::string_view tool;
  // 1 for the first attempt.
  int attempt = 1;
  // The overall deadline; TimePoint::max() when there is none.
  TimePoint deadline = TimePoint::max();
  // Set when ToolOps stopped waiting for this attempt (it timed out): a tool
  // that checks it can give up early. Never null inside a call.
  const std::atomic<bool>* abandoned = nullptr;
  // The agent framework's id of this tool call (ScopedCallId in tracing.h),
  // or empty.
  std::string_view call_id;
};

// The context of the wrapped call running on this thread, or null.
const CallContext* CurrentCall();

// One upstream attempt at the level of bytes. Must be callable many times
// (once per attempt) and from another thread than the caller's.
using Upstream = std::function<Result<Bytes>(const CallContext&)>;
// Used when everything else failed; receives the final error.
using BytesFallback = std::function<Result<Bytes>(const Status&)>;

class CallEngine;

// What the semantic cache matches for one call: the partition (the bytes of
// the arguments that must be equal) and the free text matched by meaning.
struct SemanticQuery {
  std::string_view partition;
  std::string_view text;
};

class ToolCore : public std::enable_shared_from_this<ToolCore> {
 public:
  // Validates `spec` and `policy` and resolves the store. Returns
  // InvalidArgument (guard kPolicy) naming the bad field, or NotFound when the
  // policy names a store that is not registered.
  static Result<std::shared_ptr<ToolCore>> Create(ToolSpec spec, ToolPolicy policy,
                                                  Environment env = Environment());
  ~ToolCore();

  const ToolSpec& spec() const;
  const ToolPolicy& policy() const;
  // True when results are cached (read-only tool with caching enabled).
  bool caching() const;
  // True when calls need a key (caching or coalescing).
  bool keyed() const;
  // The bytes every key of this tool starts with (tool name and version).
  const std::string& key_prefix() const;
  // Unique for the life of the process (never reused by another core), so
  // that a buffer known to start with this core's key prefix can be told
  // apart from one left by a core that has since been destroyed.
  uint64_t id() const { return id_; }

  // Runs one call, blocking. `key` is the full canonical key (ignored when
  // !keyed()). `make_upstream` is called at most once, only when the call must
  // go upstream, so that a cache hit builds nothing.
  Result<Bytes> Call(const KeyRef& key, FunctionRef<Upstream()> make_upstream);
  // The same for a tool with a semantic cache: on an exact miss, the leader
  // looks for a cached question that means the same as `semantic`.
  Result<Bytes> Call(const KeyRef& key, const SemanticQuery* semantic,
                     FunctionRef<Upstream()> make_upstream);
  // True when the policy matches some parameters by meaning.
  bool semantic() const;

  // Runs one call without a key: no cache, no coalescing (counted as
  // not_cached). For calls whose arguments could not be encoded into a key.
  Result<Bytes> CallWithoutKey(FunctionRef<Upstream()> make_upstream);

  // The hit path, tried before Call(): when the local store hands out a
  // fresh value without a lock (Store::GetFresh), counts the hit, sets *out
  // and returns true; otherwise counts nothing and returns false, and the
  // caller makes the full call (which looks the key up properly).
  bool TryFreshHit(const KeyRef& key, Bytes* out);

  // TryFreshHit, then a full read of the local store (which also lets this
  // thread's next hits of the key take the lock-free path): true, counted,
  // for a fresh entry; false, counting nothing, otherwise. For runners whose
  // misses leave the calling thread (the Python asyncio runner), so that a
  // hit never does. May block on the local store's I/O when it is not the
  // memory store.
  bool TryLocalHit(const KeyRef& key, Bytes* out);

  // Sets the fallback used when a call fails after every other layer.
  void SetFallback(BytesFallback fallback);

  // Results for which `storable` returns false are handed to the caller and
  // its waiters but never cached or shared (counted as not_cached), like
  // results over cache.max_value_bytes. For codecs that could not encode a
  // value as data. REQUIRES: set before the first call.
  void SetStorable(std::function<bool(const Bytes&)> storable);

  StatsSnapshot stats() const;
  // The call latency histogram (see LatencyHistogram for how hits are timed).
  HistogramSnapshot latency() const;
  // "closed", "open" or "half-open".
  std::string_view breaker_state() const;
  // State changes of the breaker so far.
  uint64_t breaker_transitions() const;
  // Number of keys in flight now.
  size_t flights() const;
  // Callers waiting now for a call another caller leads.
  size_t waiting() const;

  // Removes this tool's cached entries; returns how many.
  size_t ClearCache();

 private:
  friend CallEngine& EngineOf(ToolCore& core);
  explicit ToolCore(std::unique_ptr<CallEngine> engine);
  std::unique_ptr<CallEngine> engine_;
  const uint64_t id_;
};

}  // namespace toolops

#endif  // TOOLOPS_TOOL_CORE_H_
