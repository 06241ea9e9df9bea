// src/replay/replay.cc

#include "replay/replay.h"

#include <atomic>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "engine/breaker.h"
#include "engine/call_engine.h"
#include "replay/replay_clock.h"
#include "toolops/postgres_store.h"
#include "toolops/redis_store.h"
#include "toolops/tool_core.h"

namespace toolops {
namespace {

using Json = nlohmann::json;

const std::vector<std::string>& DefaultSemanticNames() {
  static const std::vector<std::string> names = {"query", "question", "q",    "prompt",
                                                 "text",  "search",   "input"};
  return names;
}

Status Bad(const std::string& message) {
  return Status(StatusCode::kInvalidArgument, message, Guard::kPolicy);
}

// A deterministic uniform number in [0, 1) for (seed, call, attempt, salt).
double Uniform(uint64_t seed, uint64_t call, uint64_t attempt, uint64_t salt) {
  uint64_t z = seed ^ (call * 0x9e3779b97f4a7c15ULL) ^ (attempt * 0xbf58476d1ce4e5b9ULL) ^
               (salt * 0x94d049bb133111ebULL);
  for (int i = 0; i < 2; ++i) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
  }
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

Duration SampleLatency(const ToolModel& model, uint64_t seed, uint64_t call, int attempt) {
  double median = std::chrono::duration<double>(model.latency_median).count();
  double p95 = std::chrono::duration<double>(model.latency_p95).count();
  if (median <= 0) return Duration::zero();
  double sigma = p95 > median ? std::log(p95 / median) / 1.6448536 : 0.0;
  // Box-Muller.
  double u1 = std::max(Uniform(seed, call, attempt, 11), 1e-12);
  double u2 = Uniform(seed, call, attempt, 12);
  double z = std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
  double seconds = median * std::exp(sigma * z);
  return Duration(static_cast<int64_t>(std::min(seconds, 3600.0) * 1e9));
}

Result<Duration> ReadSeconds(const Json& j, const char* field, double scale) {
  if (!j.is_number() || j.get<double>() < 0) {
    return Bad(std::string("\"") + field + "\" must be a number of at least 0");
  }
  return Duration(static_cast<int64_t>(j.get<double>() * scale));
}

Result<StatusCode> ReadCode(const Json& j, const char* field) {
  if (!j.is_string()) return Bad(std::string("\"") + field + "\" must be a status code name");
  std::optional<StatusCode> code = ParseOutcome(j.get<std::string>());
  if (!code || *code == StatusCode::kOk) {
    return Bad(std::string("\"") + field + "\" is '" + j.get<std::string>() +
               "'; use an error code name such as \"unavailable\"");
  }
  return *code;
}

// Applies the fields of a policy object to `policy`. `where` names it.
Status ApplyPolicyJson(const Json& j, const std::string& where, ToolPolicy* policy) {
  if (!j.is_object()) return Bad(where + " must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const Json& v = *it;
    std::string at = where + "." + key;
    auto seconds = [&](Duration* out, double scale) -> Status {
      Result<Duration> d = ReadSeconds(v, at.c_str(), scale);
      if (!d.ok()) return d.status();
      *out = *d;
      return Status();
    };
    Status s;
    if (key == "name" || key == "tools") {
      continue;  // Read by the caller.
    } else if (key == "cache") {
      if (!v.is_boolean()) return Bad(at + " must be true or false");
      policy->cache.enabled = v.get<bool>();
    } else if (key == "ttl_s") {
      s = seconds(&policy->cache.ttl, 1e9);
    } else if (key == "stale_while_revalidate_s") {
      s = seconds(&policy->cache.stale_while_revalidate, 1e9);
    } else if (key == "stale_if_error_s") {
      s = seconds(&policy->cache.stale_if_error, 1e9);
    } else if (key == "coalesce") {
      if (!v.is_boolean()) return Bad(at + " must be true or false");
      policy->coalesce.enabled = v.get<bool>();
    } else if (key == "cost_per_call") {
      if (!v.is_number()) return Bad(at + " must be a number");
      policy->cost_per_call = v.get<double>();
    } else if (key == "semantic") {
      if (v.is_boolean()) {
        policy->cache.semantic.params =
            v.get<bool>() ? DefaultSemanticNames() : std::vector<std::string>{};
        continue;
      }
      if (!v.is_object()) return Bad(at + " must be true, false or an object");
      SemanticPolicy& sem = policy->cache.semantic;
      if (sem.params.empty()) sem.params = DefaultSemanticNames();
      for (auto f = v.begin(); f != v.end(); ++f) {
        const std::string& k = f.key();
        if (k == "enabled") {
          if (!f->is_boolean()) return Bad(at + ".enabled must be true or false");
          if (!f->get<bool>()) sem.params.clear();
        } else if (k == "threshold") {
          if (!f->is_number()) return Bad(at + ".threshold must be a number in (0, 1]");
          sem.threshold = f->get<double>();
        } else if (k == "guard") {
          if (!f->is_boolean()) return Bad(at + ".guard must be true or false");
          sem.guard = f->get<bool>();
        } else if (k == "candidates") {
          if (!f->is_number_unsigned()) return Bad(at + ".candidates must be a whole number");
          sem.candidates = f->get<size_t>();
        } else if (k == "params") {
          if (!f->is_array()) return Bad(at + ".params must be a list of argument names");
          sem.params.clear();
          for (const Json& p : *f) {
            if (!p.is_string()) return Bad(at + ".params must be a list of argument names");
            sem.params.push_back(p.get<std::string>());
          }
        } else {
          return Bad(at + " has an unknown field '" + k +
                     "' (known: enabled, threshold, guard, candidates, params)");
        }
      }
    } else if (key == "retry") {
      if (!v.is_object()) return Bad(at + " must be an object");
      for (auto f = v.begin(); f != v.end(); ++f) {
        const std::string& k = f.key();
        std::string fat = at + "." + k;
        if (k == "max_attempts") {
          if (!f->is_number_integer()) return Bad(fat + " must be a whole number");
          policy->retry.max_attempts = f->get<int>();
        } else if (k == "initial_backoff_ms") {
          Result<Duration> d = ReadSeconds(*f, fat.c_str(), 1e6);
          if (!d.ok()) return d.status();
          policy->retry.initial_backoff = *d;
        } else if (k == "max_backoff_ms") {
          Result<Duration> d = ReadSeconds(*f, fat.c_str(), 1e6);
          if (!d.ok()) return d.status();
          policy->retry.max_backoff = *d;
        } else if (k == "multiplier") {
          if (!f->is_number()) return Bad(fat + " must be a number");
          policy->retry.multiplier = f->get<double>();
        } else if (k == "budget_ratio") {
          if (!f->is_number()) return Bad(fat + " must be a number");
          policy->retry.budget_ratio = f->get<double>();
        } else {
          return Bad(at + " has an unknown field '" + k +
                     "' (known: max_attempts, initial_backoff_ms, max_backoff_ms, multiplier, "
                     "budget_ratio)");
        }
      }
    } else if (key == "timeout") {
      if (!v.is_object()) return Bad(at + " must be an object");
      for (auto f = v.begin(); f != v.end(); ++f) {
        const std::string& k = f.key();
        std::string fat = at + "." + k;
        Result<Duration> d = ReadSeconds(*f, fat.c_str(), 1e6);
        if (k != "attempt_ms" && k != "deadline_ms") {
          return Bad(at + " has an unknown field '" + k + "' (known: attempt_ms, deadline_ms)");
        }
        if (!d.ok()) return d.status();
        (k == "attempt_ms" ? policy->timeout.attempt_timeout : policy->timeout.deadline) = *d;
      }
    } else if (key == "limit") {
      if (!v.is_object()) return Bad(at + " must be an object");
      for (auto f = v.begin(); f != v.end(); ++f) {
        const std::string& k = f.key();
        std::string fat = at + "." + k;
        if (k == "max_concurrent") {
          if (!f->is_number_unsigned()) return Bad(fat + " must be a whole number (0: no limit)");
          policy->limit.max_concurrent = f->get<int>();
        } else if (k == "max_wait_ms") {
          Result<Duration> d = ReadSeconds(*f, fat.c_str(), 1e6);
          if (!d.ok()) return d.status();
          policy->limit.max_wait = *d;
        } else {
          return Bad(at + " has an unknown field '" + k + "' (known: max_concurrent, max_wait_ms)");
        }
      }
    } else if (key == "breaker") {
      if (v.is_boolean()) {
        policy->breaker.enabled = v.get<bool>();
        continue;
      }
      if (!v.is_object()) return Bad(at + " must be true, false or an object");
      for (auto f = v.begin(); f != v.end(); ++f) {
        const std::string& k = f.key();
        std::string fat = at + "." + k;
        if (k == "enabled") {
          if (!f->is_boolean()) return Bad(fat + " must be true or false");
          policy->breaker.enabled = f->get<bool>();
        } else if (k == "window_size" || k == "minimum_calls" || k == "half_open_probes") {
          if (!f->is_number_integer()) return Bad(fat + " must be a whole number");
          int n = f->get<int>();
          if (k == "window_size") policy->breaker.window_size = n;
          if (k == "minimum_calls") policy->breaker.minimum_calls = n;
          if (k == "half_open_probes") policy->breaker.half_open_probes = n;
        } else if (k == "failure_rate") {
          if (!f->is_number()) return Bad(fat + " must be a number in (0, 1]");
          policy->breaker.failure_rate_threshold = f->get<double>();
        } else if (k == "open_wait_s") {
          Result<Duration> d = ReadSeconds(*f, fat.c_str(), 1e9);
          if (!d.ok()) return d.status();
          policy->breaker.open_wait = *d;
        } else {
          return Bad(at + " has an unknown field '" + k +
                     "' (known: enabled, window_size, minimum_calls, half_open_probes, "
                     "failure_rate, open_wait_s)");
        }
      }
    } else {
      return Bad(at +
                 " is not a policy field (known: cache, ttl_s, stale_while_revalidate_s, "
                 "stale_if_error_s, coalesce, cost_per_call, semantic, retry, timeout, limit, "
                 "breaker, tools)");
    }
    if (!s.ok()) return s;
  }
  return Status();
}

Result<ToolModel> ParseModel(const Json& j, const std::string& where, ToolModel model) {
  if (!j.is_object()) return Bad(where + " must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const Json& v = *it;
    std::string at = where + "." + key;
    if (key == "cost") {
      if (!v.is_number() || v.get<double>() < 0) return Bad(at + " must be a number of at least 0");
      model.cost = v.get<double>();
    } else if (key == "latency_ms") {
      if (v.is_number()) {
        Result<Duration> d = ReadSeconds(v, at.c_str(), 1e6);
        if (!d.ok()) return d.status();
        model.latency_median = model.latency_p95 = *d;
      } else if (v.is_object() && v.contains("median") && v["median"].is_number()) {
        Result<Duration> median = ReadSeconds(v["median"], (at + ".median").c_str(), 1e6);
        if (!median.ok()) return median.status();
        model.latency_median = model.latency_p95 = *median;
        if (v.contains("p95")) {
          Result<Duration> p95 = ReadSeconds(v["p95"], (at + ".p95").c_str(), 1e6);
          if (!p95.ok()) return p95.status();
          if (*p95 < *median) return Bad(at + ".p95 must be at least the median");
          model.latency_p95 = *p95;
        }
      } else {
        return Bad(at + " must be a number or {\"median\": ms, \"p95\": ms}");
      }
    } else if (key == "failure_rate") {
      if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1) {
        return Bad(at + " must be a probability in [0, 1]");
      }
      model.failure_rate = v.get<double>();
    } else if (key == "failure_code") {
      Result<StatusCode> code = ReadCode(v, at.c_str());
      if (!code.ok()) return code.status();
      model.failure_code = *code;
    } else if (key == "rate_limit_per_s") {
      if (!v.is_number() || v.get<double>() < 0) return Bad(at + " must be a number of at least 0");
      model.rate_limit_per_second = v.get<double>();
    } else if (key == "semantic_params") {
      if (!v.is_array()) return Bad(at + " must be a list of argument names");
      model.semantic_params.clear();
      for (const Json& p : v) {
        if (!p.is_string()) return Bad(at + " must be a list of argument names");
        model.semantic_params.push_back(p.get<std::string>());
      }
    } else if (key == "error_bursts") {
      if (!v.is_array()) return Bad(at + " must be a list of {from_s, to_s, rate, code}");
      model.bursts.clear();
      for (size_t i = 0; i < v.size(); ++i) {
        const Json& b = v[i];
        std::string bat = at + "[" + std::to_string(i) + "]";
        if (!b.is_object() || !b.contains("from_s") || !b.contains("to_s")) {
          return Bad(bat + " needs from_s and to_s (seconds from the trace's first call)");
        }
        ToolModel::ErrorBurst burst;
        Result<Duration> from = ReadSeconds(b["from_s"], (bat + ".from_s").c_str(), 1e9);
        if (!from.ok()) return from.status();
        Result<Duration> to = ReadSeconds(b["to_s"], (bat + ".to_s").c_str(), 1e9);
        if (!to.ok()) return to.status();
        if (*to <= *from) return Bad(bat + ".to_s must be after from_s");
        burst.from = *from;
        burst.to = *to;
        if (b.contains("rate")) {
          if (!b["rate"].is_number() || b["rate"].get<double>() < 0 ||
              b["rate"].get<double>() > 1) {
            return Bad(bat + ".rate must be a probability in [0, 1]");
          }
          burst.rate = b["rate"].get<double>();
        }
        if (b.contains("code")) {
          Result<StatusCode> code = ReadCode(b["code"], (bat + ".code").c_str());
          if (!code.ok()) return code.status();
          burst.code = *code;
        }
        model.bursts.push_back(burst);
      }
    } else {
      return Bad(at +
                 " is not a tool model field (known: cost, latency_ms, failure_rate, "
                 "failure_code, error_bursts, rate_limit_per_s, semantic_params)");
    }
  }
  return model;
}

// --- The replay ---

struct ToolState {
  std::string name;
  std::vector<std::shared_ptr<ToolCore>> cores;  // One per worker.
  const ToolModel* model = nullptr;
  std::vector<std::string> semantic_params;  // Empty: exact only.
  TextNormalization normalization = TextNormalization::kNone;
  Duration ttl{};
  bool caching = false;

  // The latest observed outcome of this tool in the trace, up to the
  // dispatcher's time.
  std::atomic<uint8_t> last_observed{static_cast<uint8_t>(StatusCode::kOk)};
  std::atomic<uint64_t> breaker_openings{0};

  std::mutex mu;  // Guards the fields below.
  double tokens = 0;
  TimePoint tokens_at{};
  ToolReport report;
};

// What a call's upstream needs; copied into the closure (a background
// refresh may run it after the call has returned).
struct CallInfo {
  uint64_t seq = 0;
  std::optional<Duration> latency;
  std::optional<StatusCode> outcome;
  double cost = 0;
  bool labelled = false;
  std::string label;
  std::string args;  // JSON, carried in the answer for wrong-answer examples.
};

// Followers of another worker's lease, counted for the clock's blocked
// probe. A leader's Complete or Release counts its followers as running again
// before they hear of it over the store, so that time cannot move in between
// (the same hand-over as the in-process flights'; see replay_clock.h).
class LeaseWaits {
 public:
  struct Waiter {
    bool released = false;
  };
  void Begin(std::string_view key, Waiter* w) {
    std::lock_guard<std::mutex> lock(mu_);
    waiters_.emplace(std::string(key), w);
    blocked_.fetch_add(1);
  }
  void End(std::string_view key, Waiter* w) {
    std::lock_guard<std::mutex> lock(mu_);
    auto [from, to] = waiters_.equal_range(std::string(key));
    for (auto it = from; it != to; ++it) {
      if (it->second == w) {
        waiters_.erase(it);
        break;
      }
    }
    if (!w->released) blocked_.fetch_sub(1);
  }
  // Every follower of `key` runs again.
  void Release(std::string_view key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto [from, to] = waiters_.equal_range(std::string(key));
    for (auto it = from; it != to; ++it) {
      if (!it->second->released) {
        it->second->released = true;
        blocked_.fetch_sub(1);
      }
    }
  }
  size_t blocked() const { return blocked_.load(); }

 private:
  std::mutex mu_;
  std::unordered_multimap<std::string, Waiter*> waiters_;
  std::atomic<size_t> blocked_{0};
};

// One worker's connection to the shared store, seen through a coordinator
// whose waits the replay clock counts (LeaseWaits).
class CountedSharedStore final : public Store, public FlightCoordinator {
 public:
  CountedSharedStore(std::unique_ptr<Store> inner, LeaseWaits* waits)
      : inner_(std::move(inner)), waits_(waits) {}

  std::optional<StoredValue> Get(const KeyRef& key, TimePoint now) override {
    return inner_->Get(key, now);
  }
  bool GetFresh(const KeyRef& key, TimePoint now, Bytes* out) override {
    return inner_->GetFresh(key, now, out);
  }
  Status Put(const KeyRef& key, const StoredValue& value, TimePoint now) override {
    return inner_->Put(key, value, now);
  }
  bool Erase(const KeyRef& key) override { return inner_->Erase(key); }
  size_t EraseByPrefix(std::string_view prefix) override { return inner_->EraseByPrefix(prefix); }
  StoreStats Stats() const override { return inner_->Stats(); }
  std::string_view name() const override { return inner_->name(); }
  FlightCoordinator* coordinator() override {
    return inner_->coordinator() == nullptr ? nullptr : this;
  }
  BreakerBus* breaker_bus() override { return inner_->breaker_bus(); }
  SemanticBus* semantic_bus() override { return inner_->semantic_bus(); }

  Lease Acquire(const KeyRef& key) override { return inner_->coordinator()->Acquire(key); }
  bool Complete(const KeyRef& key, uint64_t token, const Result<StoredValue>& outcome,
                TimePoint now) override {
    waits_->Release(key.bytes);
    return inner_->coordinator()->Complete(key, token, outcome, now);
  }
  void Release(const KeyRef& key, uint64_t token) override {
    waits_->Release(key.bytes);
    inner_->coordinator()->Release(key, token);
  }
  WaitResult Wait(const KeyRef& key, const Lease& lease, TimePoint until) override {
    LeaseWaits::Waiter waiter;
    waits_->Begin(key.bytes, &waiter);
    WaitResult result = inner_->coordinator()->Wait(key, lease, until);
    waits_->End(key.bytes, &waiter);
    return result;
  }

 private:
  std::unique_ptr<Store> inner_;
  LeaseWaits* waits_;
};

// What one worker owns: its stores (its own "memory", its connection to
// "shared").
struct Worker {
  StoreRegistry stores;
  bool shared = false;
};

class Run {
 public:
  Run(const ReplayPolicy& policy, const Simulation& simulation, const ReplayOptions& options,
      int64_t first_ns)
      : policy_(policy),
        simulation_(simulation),
        options_(options),
        first_ns_(first_ns),
        start_(TimePoint(std::chrono::hours(24 * 365))),
        random_(simulation.seed),
        pool_(options.max_threads),
        clock_(start_, options.speed, [this] { return Blocked(); }),
        executor_(
            &clock_, &pool_,
            [this] {
              std::lock_guard<std::mutex> lock(done_mu_);
              background_.fetch_add(1);
            },
            [this] { OnTaskDone(/*background=*/true); }) {
    report_.series = TimeSeries(first_ns);
    report_.first_ns = first_ns;
    report_.policy = policy.name;
    report_.speed = options.speed;
    report_.workers = std::max<size_t>(1, options.workers);
    report_.shared_store = options.shared_store_label;
    std::random_device device;
    run_id_ = (uint64_t{device()} << 32) ^ device() ^
              static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  }

  // Opens each worker's stores. The shared store's errors, with its label.
  Status Open();
  Result<ReplayReport> Go(CallSource& source, TraceCall first);

 private:
  Result<ToolState*> GetTool(const std::string& name);
  size_t Blocked() {
    std::lock_guard<std::mutex> lock(cores_mu_);
    size_t n = lease_waits_.blocked();
    for (ToolCore* core : cores_) n += core->waiting();
    return n;
  }
  // The last thing a call's or a refresh's thread does: once it releases the
  // lock, Go() may return and destroy this run.
  void OnTaskDone(bool background) {
    std::lock_guard<std::mutex> lock(done_mu_);
    if (background) {
      background_.fetch_sub(1);
    } else {
      completed_.fetch_add(1);
    }
    done_cv_.notify_all();
  }
  TimePoint TraceTime(int64_t ns) const { return start_ + Duration(ns - first_ns_); }
  int64_t UnixOf(TimePoint t) const { return first_ns_ + (t - start_).count(); }

  // The first attempt's latency and outcome, as a direct call would see it.
  Duration DirectLatency(const ToolState& tool, const CallInfo& info) const {
    if (simulation_.use_trace && info.latency) return *info.latency;
    return SampleLatency(*tool.model, simulation_.seed, info.seq, 1);
  }
  StatusCode ModelFailure(const ToolState& tool, uint64_t seq, int attempt, TimePoint at) const {
    const ToolModel& model = *tool.model;
    Duration since = at - start_;
    for (const ToolModel::ErrorBurst& burst : model.bursts) {
      if (since >= burst.from && since < burst.to &&
          Uniform(simulation_.seed, seq, attempt, 21) < burst.rate) {
        return burst.code;
      }
    }
    if (model.failure_rate > 0 &&
        Uniform(simulation_.seed, seq, attempt, 22) < model.failure_rate) {
      return model.failure_code;
    }
    return StatusCode::kOk;
  }
  StatusCode DirectOutcome(const ToolState& tool, const CallInfo& info, TimePoint at) const {
    if (simulation_.use_trace && info.outcome) return *info.outcome;
    return ModelFailure(tool, info.seq, 1, at);
  }

  Result<Bytes> Attempt(ToolState& tool, const CallInfo& info, int attempt);
  void RunCall(ToolState& tool, ToolCore& core, TraceCall call, CallInfo info);
  size_t WorkerOf(const TraceCall& call, uint64_t seq) const {
    if (workers_.size() == 1) return 0;
    const std::string& who = !call.agent.empty() ? call.agent : call.conversation;
    uint64_t h = who.empty() ? seq : std::hash<std::string>()(who);
    return static_cast<size_t>(h % workers_.size());
  }
  void Progress(bool final);

  const ReplayPolicy& policy_;
  const Simulation& simulation_;
  const ReplayOptions& options_;
  const int64_t first_ns_;
  const TimePoint start_;

  SeededRandom random_;
  uint64_t run_id_ = 0;
  LeaseWaits lease_waits_;
  ElasticPool pool_;
  ReplayClock clock_;
  ReplayExecutor executor_;
  // After the clock: the shared stores' threads read it until they stop.
  std::vector<std::unique_ptr<Worker>> workers_;

  std::map<std::string, std::unique_ptr<ToolState>> tools_;  // Dispatcher only.
  std::mutex cores_mu_;
  std::vector<ToolCore*> cores_;

  std::atomic<uint64_t> dispatched_{0};
  std::atomic<uint64_t> completed_{0};   // Written under done_mu_.
  std::atomic<uint64_t> background_{0};  // Refreshes running; under done_mu_.
  std::atomic<uint64_t> saved_{0};
  std::atomic<int64_t> dispatched_ns_{0};
  std::mutex done_mu_;
  std::condition_variable done_cv_;

  std::mutex report_mu_;
  ReplayReport report_;  // Guarded by report_mu_ while calls run.
  // The (tool, question, source) of each distinct wrong answer; guarded by
  // report_mu_, at most kMaxWrongPairs.
  static constexpr size_t kMaxWrongPairs = size_t{1} << 20;
  std::unordered_set<std::string> wrong_pairs_;
};

Status Run::Open() {
  // The shared store ages entries by a wall clock that follows trace time.
  UnixClock unix_clock = [this] { return UnixOf(clock_.Now()); };
  for (size_t i = 0; i < std::max<size_t>(1, options_.workers); ++i) {
    auto worker = std::make_unique<Worker>();
    MemoryStoreOptions store_options = options_.store;
    store_options.name = "memory";
    Result<std::unique_ptr<Store>> memory = NewMemoryStore(store_options);
    if (!memory.ok()) return memory.status();
    worker->stores.Register("memory", std::shared_ptr<Store>(std::move(memory).value()));
    if (options_.open_shared_store) {
      Result<std::unique_ptr<Store>> shared = options_.open_shared_store(&clock_, unix_clock);
      if (!shared.ok()) {
        return shared.status().WithContext("shared store " + options_.shared_store_label);
      }
      worker->stores.Register(
          "shared", std::make_shared<CountedSharedStore>(std::move(shared).value(), &lease_waits_));
      worker->shared = true;
    }
    workers_.push_back(std::move(worker));
  }
  return Status();
}

Result<ToolState*> Run::GetTool(const std::string& name) {
  auto it = tools_.find(name);
  if (it != tools_.end()) return it->second.get();
  auto tool = std::make_unique<ToolState>();
  tool->name = name;
  tool->model = &simulation_.For(name);
  ToolPolicy policy = policy_.For(name);
  policy.kind = ToolKind::kReadonly;
  policy.cache.store = "memory";
  policy.cache.shared_store = workers_.front()->shared ? "shared" : "";
  // Breaker openings are shared in wall-clock instants, which trace time is
  // not: each worker's breaker decides alone.
  policy.breaker.shared_store.clear();
  if (!policy.cache.semantic.params.empty() && !tool->model->semantic_params.empty()) {
    policy.cache.semantic.params = tool->model->semantic_params;
  }
  ToolSpec spec(name, "1", policy.cache.semantic.params);
  tool->semantic_params = policy.cache.semantic.params;
  tool->normalization = policy.cache.normalization;
  tool->ttl = policy.cache.ttl;
  tool->caching = policy.cache.enabled;
  {
    std::lock_guard<std::mutex> lock(report_mu_);
    if (policy.timeout.attempt_timeout > Duration::zero() ||
        policy.timeout.deadline > Duration::zero()) {
      report_.timeouts_set = true;
    }
    if (policy.limit.max_concurrent > 0) report_.limit_set = true;
  }
  ToolState* raw = tool.get();
  for (const std::unique_ptr<Worker>& worker : workers_) {
    Environment env;
    env.clock = &clock_;
    env.random = &random_;
    env.stores = &worker->stores;
    env.executor = &executor_;
    env.embedder = options_.embedder;
    Result<std::shared_ptr<ToolCore>> core = ToolCore::Create(spec, policy, env);
    if (!core.ok()) return core.status().WithContext("policy '" + policy_.name + "'");
    EngineOf(**core).breaker().SetListener([raw](BreakerState, BreakerState to, std::string_view) {
      if (to == BreakerState::kOpen) raw->breaker_openings.fetch_add(1);
    });
    {
      std::lock_guard<std::mutex> lock(cores_mu_);
      cores_.push_back(core->get());
    }
    tool->cores.push_back(std::move(core).value());
  }
  if (!tool->cores.front()->semantic()) tool->semantic_params.clear();
  tool->report.tool = name;
  tools_.emplace(name, std::move(tool));
  return raw;
}

Result<Bytes> Run::Attempt(ToolState& tool, const CallInfo& info, int attempt) {
  const ToolModel& model = *tool.model;
  TimePoint now = clock_.Now();

  // Rate limit: a bucket of one second's worth of attempts.
  if (model.rate_limit_per_second > 0) {
    std::unique_lock<std::mutex> lock(tool.mu);
    double rate = model.rate_limit_per_second;
    if (tool.tokens_at == TimePoint{}) {
      tool.tokens = rate;
    } else {
      tool.tokens = std::min(
          rate, tool.tokens + rate * std::chrono::duration<double>(now - tool.tokens_at).count());
    }
    tool.tokens_at = now;
    if (tool.tokens < 1) {
      ++tool.report.rate_limited;
      Duration wait(static_cast<int64_t>((1 - tool.tokens) / rate * 1e9));
      lock.unlock();
      clock_.SleepFor(std::chrono::milliseconds(5));
      return Status(StatusCode::kResourceExhausted, "simulated rate limit of '" + tool.name + "'",
                    Guard::kUpstream, wait);
    }
    tool.tokens -= 1;
  }

  Duration latency;
  StatusCode code;
  if (attempt == 1) {
    latency = DirectLatency(tool, info);
    code = DirectOutcome(tool, info, now);
  } else {
    latency = SampleLatency(model, simulation_.seed, info.seq, attempt);
    code = simulation_.use_trace ? static_cast<StatusCode>(tool.last_observed.load())
                                 : StatusCode::kOk;
    if (code == StatusCode::kOk) code = ModelFailure(tool, info.seq, attempt, now);
  }
  {
    std::lock_guard<std::mutex> lock(tool.mu);
    ++tool.report.upstream;
    tool.report.cost_with += info.cost;
  }
  {
    std::lock_guard<std::mutex> lock(report_mu_);
    report_.series.Add(UnixOf(now), TimeSeries::kUpstream);
  }
  clock_.SleepFor(latency);
  if (code != StatusCode::kOk) {
    return Status(code, "simulated failure of '" + tool.name + "'", Guard::kUpstream);
  }
  SimulatedAnswer answer{info.seq,      clock_.Now().time_since_epoch().count(),
                         info.labelled, info.label,
                         info.args,     run_id_};
  return Bytes::Copy(EncodeAnswer(answer));
}

void Run::RunCall(ToolState& tool, ToolCore& core, TraceCall call, CallInfo info) {
  const TimePoint start = clock_.Now();
  auto make_upstream = [&]() -> Upstream {
    return [this, tool = &tool, info](const CallContext& ctx) {
      return Attempt(*tool, info, ctx.attempt);
    };
  };

  Result<Bytes> result = Status();
  if (!core.keyed()) {
    result = core.Call(KeyRef{}, make_upstream);
  } else {
    std::string key = core.key_prefix();
    ArgWriter writer(&key, tool.normalization);
    call.args.Encode(writer);
    if (!writer.Finish().ok()) {
      result = core.CallWithoutKey(make_upstream);
    } else {
      const KeyRef ref = KeyRef::Of(key);
      std::string partition;
      std::string text;
      bool semantic = false;
      if (!tool.semantic_params.empty()) {
        Value::Map rest;
        for (const auto& [name, value] : call.args.map()) {
          bool matched = false;
          for (const std::string& param : tool.semantic_params) {
            if (name == param && value.kind() == Value::Kind::kString) matched = true;
          }
          if (!matched) rest.emplace_back(name, value);
        }
        for (const std::string& param : tool.semantic_params) {
          const Value* v = call.args.Find(param);
          if (v == nullptr || v->kind() != Value::Kind::kString) continue;
          if (!text.empty()) text.push_back('\n');
          text += v->string_value();
          semantic = true;
        }
        partition = core.key_prefix();
        ArgWriter pw(&partition, tool.normalization);
        Value(std::move(rest)).Encode(pw);
        semantic = semantic && pw.Finish().ok();
      }
      Bytes hit;
      if (core.TryFreshHit(ref, &hit)) {
        result = std::move(hit);
      } else if (semantic) {
        SemanticQuery query{partition, text};
        result = core.Call(ref, &query, make_upstream);
      } else {
        result = core.Call(ref, make_upstream);
      }
    }
  }
  const TimePoint end = clock_.Now();

  // Check the answer and record the call.
  bool served = false;
  bool wrong = false;
  bool labelled_served = false;
  Duration latency = end - start;
  SimulatedAnswer wrong_source;
  if (result.ok()) {
    SimulatedAnswer answer;
    if (DecodeAnswer(result.value().view(), &answer) &&
        (answer.source != info.seq || answer.run != run_id_)) {
      served = true;
      labelled_served = info.labelled && answer.labelled;
      wrong = labelled_served && answer.label != info.label;
      if (wrong) wrong_source = answer;
      // A coalesced call ends when its leader's answer arrived (see
      // replay_clock.h); a cache hit takes no trace time.
      TimePoint done{Duration(answer.done_ns)};
      latency =
          done > start && answer.run == run_id_ ? std::min(done, end) - start : Duration::zero();
    }
  }
  if (served) saved_.fetch_add(1, std::memory_order_relaxed);
  const bool deadline = !result.ok() && result.status().code() == StatusCode::kDeadlineExceeded &&
                        (result.status().guard() == Guard::kDeadline ||
                         result.status().guard() == Guard::kAttemptTimeout);
  {
    std::lock_guard<std::mutex> lock(tool.mu);
    if (wrong) ++tool.report.wrong;
    if (!result.ok()) ++tool.report.failed_with;
    if (deadline) ++tool.report.deadline_exceeded;
  }
  {
    std::lock_guard<std::mutex> lock(report_mu_);
    report_.latency_with.Add(latency);
    int64_t at = UnixOf(start);
    if (served) {
      ++report_.served;
      report_.series.Add(at, TimeSeries::kSaved);
    }
    if (labelled_served) ++report_.labelled_served;
    bool distinct = false;
    if (wrong) {
      ++report_.wrong;
      std::string pair = tool.name;
      pair.push_back('\x1f');
      pair += info.args;
      pair.push_back('\x1f');
      pair += std::to_string(wrong_source.run) + ":" + std::to_string(wrong_source.source);
      distinct =
          wrong_pairs_.size() >= kMaxWrongPairs || wrong_pairs_.insert(std::move(pair)).second;
      if (distinct) ++report_.wrong_distinct;
    }
    if (distinct) {
      // Examples of distinct mistakes, not of their repeats.
      if (report_.wrong_examples.size() < options_.keep_wrong) {
        report_.wrong_examples.push_back(
            {tool.name, info.args, info.label, wrong_source.args, wrong_source.label});
      }
    }
    if (!result.ok()) {
      ++report_.failed_with;
      report_.series.Add(at, TimeSeries::kFailed);
    }
  }
}

void Run::Progress(bool final) {
  if (!options_.on_progress) return;
  ReplayProgress p;
  p.dispatched = dispatched_.load();
  p.completed = completed_.load();
  p.saved = saved_.load();
  p.trace_elapsed = Duration(dispatched_ns_.load() - first_ns_);
  options_.on_progress(p);
  (void) final;
}

Result<ReplayReport> Run::Go(CallSource& source, TraceCall first) {
  const auto wall_start = std::chrono::steady_clock::now();
  std::atomic<bool> finished{false};
  std::thread progress;
  if (options_.on_progress) {
    progress = std::thread([&] {
      while (!finished.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        Progress(false);
      }
    });
  }

  // Windows of the attainable bound: (tool, intent) -> end of its window.
  std::unordered_map<std::string, int64_t> windows;
  uint64_t next_prune = 65536;
  Status status;

  clock_.Enter();  // The dispatcher.
  std::optional<TraceCall> next = std::move(first);
  uint64_t seq = 0;
  for (; next; next = source.Next()) {
    TraceCall call = std::move(*next);
    clock_.SleepUntil(TraceTime(call.time_ns));
    // Every call in flight holds a thread (it waits in trace time); past the
    // pool's bound a queued call would never run and time would stop.
    if (dispatched_.load() - completed_.load() + background_.load() >= options_.max_threads) {
      status = Status(StatusCode::kResourceExhausted,
                      "more than " + std::to_string(options_.max_threads) +
                          " calls in flight at once at " + FormatRfc3339(call.time_ns) +
                          " (trace line " + std::to_string(call.line) +
                          "); the replay needs a thread per call in flight",
                      Guard::kLimiter);
      break;
    }
    Result<ToolState*> found = GetTool(call.tool);
    if (!found.ok()) {
      status = found.status();
      break;
    }
    ToolState& tool = **found;
    ++seq;

#ifdef __GLIBC__
    if (seq % 65536 == 0) {
      // The heap stays small (about 20 MB on the sample) but the calls'
      // threads allocate in arenas of their own, and glibc keeps what they
      // freed: without this, resident memory creeps up with the trace's
      // length (114 MB after a million calls). Give it back now and then.
      malloc_trim(0);
    }
#endif
    CallInfo info;
    info.seq = seq;
    info.latency = call.latency;
    info.outcome = call.outcome;
    info.cost = simulation_.use_trace && call.cost ? *call.cost : tool.model->cost;
    info.labelled = !call.intent.empty();
    info.args = call.args.ToJson();
    info.label = info.labelled ? call.intent : call.tool + " " + info.args;
    if (simulation_.use_trace && call.outcome) {
      tool.last_observed.store(static_cast<uint8_t>(*call.outcome));
    }

    // The direct call, without the middleware.
    TimePoint now = TraceTime(call.time_ns);
    Duration direct_latency = DirectLatency(tool, info);
    bool direct_fails = DirectOutcome(tool, info, now) != StatusCode::kOk;

    // The attainable bound.
    bool new_window = true;
    if (tool.caching) {
      std::string window_key = call.tool;
      window_key.push_back('\x1f');
      window_key += info.label;
      auto [it, inserted] = windows.try_emplace(std::move(window_key), 0);
      new_window = inserted || it->second <= call.time_ns;
      if (new_window) it->second = call.time_ns + tool.ttl.count();
      if (seq >= next_prune) {
        for (auto w = windows.begin(); w != windows.end();) {
          w = w->second <= call.time_ns ? windows.erase(w) : std::next(w);
        }
        next_prune = seq + std::max<uint64_t>(65536, 2 * windows.size());
      }
    }
    {
      std::lock_guard<std::mutex> lock(tool.mu);
      ++tool.report.requested;
      tool.report.cost_without += info.cost;
      if (direct_fails) ++tool.report.failed_without;
    }
    {
      std::lock_guard<std::mutex> lock(report_mu_);
      ++report_.requested;
      report_.last_ns = call.time_ns;
      if (new_window) ++report_.ttl_windows;
      if (direct_fails) ++report_.failed_without;
      report_.cost_without += info.cost;
      report_.latency_without.Add(direct_latency);
      report_.series.Add(call.time_ns, TimeSeries::kRequested);
    }
    dispatched_.fetch_add(1, std::memory_order_relaxed);
    dispatched_ns_.store(call.time_ns, std::memory_order_relaxed);

    ToolCore* core = tool.cores[WorkerOf(call, seq)].get();
    clock_.Enter();
    pool_.Submit([this, &tool, core, call = std::move(call), info = std::move(info)]() mutable {
      RunCall(tool, *core, std::move(call), std::move(info));
      clock_.Leave();
      OnTaskDone(/*background=*/false);
    });
  }
  if (status.ok()) status = source.status();
  clock_.Leave();

  // Wait for every call and background refresh.
  {
    std::unique_lock<std::mutex> lock(done_mu_);
    done_cv_.wait(
        lock, [&] { return completed_.load() == dispatched_.load() && background_.load() == 0; });
  }
  finished.store(true);
  if (progress.joinable()) progress.join();
  Progress(true);
  if (!status.ok()) return status;

  // Gather the tools' counters.
  ReplayReport report;
  {
    std::lock_guard<std::mutex> lock(report_mu_);
    report = std::move(report_);
  }
  for (auto& [name, tool] : tools_) {
    StatsSnapshot s;
    for (const std::shared_ptr<ToolCore>& core : tool->cores) {
      StatsSnapshot one = core->stats();
      for (size_t i = 0; i < s.values.size(); ++i) s.values[i] += one.values[i];
    }
    ToolReport t;
    {
      std::lock_guard<std::mutex> lock(tool->mu);
      t = tool->report;
    }
    t.saved.exact = s[Counter::kFreshHit];
    t.saved.semantic = s[Counter::kSemanticHit];
    t.saved.coalesced = s[Counter::kCoalesced];
    t.saved.stale = s[Counter::kStaleHit] + s[Counter::kStaleIfError];
    t.retries = s[Counter::kRetries];
    t.rejected_by_breaker = s[Counter::kRejectedByBreaker];
    t.breaker_openings = tool->breaker_openings.load();
    t.attempt_timeouts = s[Counter::kAttemptTimeouts];
    t.rejected_by_limiter = s[Counter::kRejectedByLimiter];
    t.shared_hits = s[Counter::kSharedHits];
    t.remote_coalesced = s[Counter::kRemoteCoalesced];
    report.attempt_timeouts += t.attempt_timeouts;
    report.deadline_exceeded += t.deadline_exceeded;
    report.rejected_by_limiter += t.rejected_by_limiter;
    report.shared_hits += t.shared_hits;
    report.remote_coalesced += t.remote_coalesced;
    report.upstream += t.upstream;
    report.saved.exact += t.saved.exact;
    report.saved.semantic += t.saved.semantic;
    report.saved.coalesced += t.saved.coalesced;
    report.saved.stale += t.saved.stale;
    report.retries += t.retries;
    report.rejected_by_breaker += t.rejected_by_breaker;
    report.breaker_openings += t.breaker_openings;
    report.guard_refusals += s[Counter::kGuardRefusals];
    report.rate_limited += t.rate_limited;
    report.cost_with += t.cost_with;
    report.tools.push_back(std::move(t));
  }
  report.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  report.peak_threads = pool_.threads();
  report.clock_jumps = clock_.jumps();
  return report;
}

}  // namespace

const ToolModel& Simulation::For(const std::string& tool) const {
  auto it = tools.find(tool);
  return it == tools.end() ? defaults : it->second;
}

const ToolPolicy& ReplayPolicy::For(const std::string& tool) const {
  auto it = tools.find(tool);
  return it == tools.end() ? base : it->second;
}

Result<Simulation> ParseSimulation(std::string_view text, const std::string& name) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Bad("simulation file '" + name + "' is not a JSON object");
  }
  Simulation sim;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key == "use_trace") {
      if (!it->is_boolean()) return Bad(name + ": use_trace must be true or false");
      sim.use_trace = it->get<bool>();
    } else if (key == "seed") {
      if (!it->is_number_unsigned()) return Bad(name + ": seed must be a whole number");
      sim.seed = it->get<uint64_t>();
    } else if (key == "defaults") {
      Result<ToolModel> m = ParseModel(*it, name + ": defaults", sim.defaults);
      if (!m.ok()) return m.status();
      sim.defaults = *m;
    } else if (key == "tools") {
      if (!it->is_object()) return Bad(name + ": tools must be an object of tool models");
      for (auto t = it->begin(); t != it->end(); ++t) {
        Result<ToolModel> m = ParseModel(*t, name + ": tools." + t.key(), sim.defaults);
        if (!m.ok()) return m.status();
        sim.tools[t.key()] = *m;
      }
    } else {
      return Bad(name + ": unknown field '" + key + "' (known: use_trace, seed, defaults, tools)");
    }
  }
  return sim;
}

Result<Simulation> LoadSimulation(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status(StatusCode::kNotFound, "simulation file '" + path + "' cannot be opened");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseSimulation(buffer.str(), path);
}

ToolPolicy ReplayBasePolicy() {
  ToolPolicy policy;
  policy.retry.max_attempts = 3;
  policy.retry.initial_backoff = std::chrono::milliseconds(200);
  policy.retry.max_backoff = std::chrono::seconds(5);
  policy.cache.stale_if_error = std::chrono::minutes(30);
  return policy;
}

Result<ReplayPolicy> ParsePolicySpec(const std::string& spec, Duration ttl) {
  ReplayPolicy out;
  out.name = spec;
  out.base = ReplayBasePolicy();
  if (ttl > Duration::zero()) out.base.cache.ttl = ttl;
  auto threshold_of = [&](std::string_view rest, double* t) -> Status {
    double v = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), v);
    if (ec != std::errc() || end != rest.data() + rest.size() || !(v > 0 && v <= 1)) {
      return Bad("policy '" + spec + "': the threshold must be a number in (0, 1], as in " +
                 "semantic:0.85");
    }
    *t = v;
    return Status();
  };
  if (spec == "none") {
    out.base.cache.enabled = false;
    out.base.coalesce.enabled = false;
    return out;
  }
  if (spec == "exact") return out;
  if (spec == "semantic" || spec.rfind("semantic:", 0) == 0 ||
      spec.rfind("semantic-noguard:", 0) == 0) {
    out.base.cache.semantic.params = DefaultSemanticNames();
    if (spec != "semantic") {
      size_t colon = spec.find(':');
      if (Status s = threshold_of(std::string_view(spec).substr(colon + 1),
                                  &out.base.cache.semantic.threshold);
          !s.ok()) {
        return s;
      }
      out.base.cache.semantic.guard = spec.rfind("semantic-noguard:", 0) != 0;
    }
    return out;
  }

  // A policy file.
  std::ifstream in(spec);
  if (!in) {
    return Bad("policy '" + spec +
               "' is neither a preset (none, exact, semantic, semantic:T, semantic-noguard:T) "
               "nor a readable JSON file");
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  Json j = Json::parse(buffer.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Bad("policy file '" + spec + "' is not a JSON object");
  if (j.contains("name")) {
    if (!j["name"].is_string()) return Bad("policy file '" + spec + "': name must be a string");
    out.name = j["name"].get<std::string>();
  }
  out.base = ReplayBasePolicy();
  if (Status s = ApplyPolicyJson(j, spec, &out.base); !s.ok()) return s;
  if (j.contains("tools")) {
    if (!j["tools"].is_object()) return Bad("policy file '" + spec + "': tools must be an object");
    for (auto it = j["tools"].begin(); it != j["tools"].end(); ++it) {
      ToolPolicy tool = out.base;
      if (Status s = ApplyPolicyJson(*it, spec + ": tools." + it.key(), &tool); !s.ok()) return s;
      out.tools[it.key()] = tool;
    }
  }
  // Check each policy now rather than at the tool's first call.
  if (Status s = Validate(ToolSpec("any", "1", out.base.cache.semantic.params), out.base);
      !s.ok()) {
    return s.WithContext("policy file '" + spec + "'");
  }
  for (const auto& [name, tool] : out.tools) {
    if (Status s = Validate(ToolSpec(name, "1", tool.cache.semantic.params), tool); !s.ok()) {
      return s.WithContext("policy file '" + spec + "'");
    }
  }
  return out;
}

// run|seq|done_ns|L or C|label length|label args
std::string EncodeAnswer(const SimulatedAnswer& a) {
  std::string out = std::to_string(a.run);
  out.push_back('|');
  out += std::to_string(a.source);
  out.push_back('|');
  out += std::to_string(a.done_ns);
  out.push_back('|');
  out.push_back(a.labelled ? 'L' : 'C');
  out.push_back('|');
  out += std::to_string(a.label.size());
  out.push_back('|');
  out += a.label;
  out += a.args;
  return out;
}

bool DecodeAnswer(std::string_view bytes, SimulatedAnswer* out) {
  auto field = [&](auto* value) {
    size_t bar = bytes.find('|');
    if (bar == std::string_view::npos) return false;
    auto [end, ec] = std::from_chars(bytes.data(), bytes.data() + bar, *value);
    if (ec != std::errc() || end != bytes.data() + bar) return false;
    bytes.remove_prefix(bar + 1);
    return true;
  };
  if (!field(&out->run) || !field(&out->source) || !field(&out->done_ns)) return false;
  if (bytes.size() < 2 || (bytes[0] != 'L' && bytes[0] != 'C') || bytes[1] != '|') return false;
  out->labelled = bytes[0] == 'L';
  bytes.remove_prefix(2);
  size_t length = 0;
  if (!field(&length) || length > bytes.size()) return false;
  out->label = std::string(bytes.substr(0, length));
  out->args = std::string(bytes.substr(length));
  return true;
}

std::string RedactUrl(const std::string& url) {
  size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  size_t at = url.find('@', scheme + 3);
  size_t slash = url.find('/', scheme + 3);
  if (at == std::string::npos || (slash != std::string::npos && slash < at)) return url;
  size_t colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

Result<SharedStoreOpener> SharedStoreFromUrl(const std::string& url,
                                             const std::string& key_namespace) {
  auto starts = [&](const char* prefix) { return url.rfind(prefix, 0) == 0; };
  if (starts("redis://") || starts("rediss://")) {
    RedisStoreOptions options;
    options.url = url;
    options.name = "shared";
    options.key_namespace = key_namespace;
    return SharedStoreOpener(
        [options](Clock* clock, UnixClock unix_clock) -> Result<std::unique_ptr<Store>> {
          Result<std::unique_ptr<RedisStore>> store = RedisStore::Open(options, clock, unix_clock);
          if (!store.ok()) return store.status();
          return std::unique_ptr<Store>(std::move(store).value());
        });
  }
  if (starts("postgres://") || starts("postgresql://")) {
    PostgresStoreOptions options;
    options.conninfo = url;
    options.name = "shared";
    options.key_namespace = key_namespace;
    return SharedStoreOpener(
        [options](Clock* clock, UnixClock unix_clock) -> Result<std::unique_ptr<Store>> {
          Result<std::unique_ptr<PostgresStore>> store =
              PostgresStore::Open(options, clock, unix_clock);
          if (!store.ok()) return store.status();
          return std::unique_ptr<Store>(std::move(store).value());
        });
  }
  return Bad("shared store '" + RedactUrl(url) +
             "' is not a redis://, rediss://, postgres:// or postgresql:// URL");
}

Result<ReplayReport> RunReplay(CallSource& source, const ReplayPolicy& policy,
                               const Simulation& simulation, const ReplayOptions& options) {
  std::optional<TraceCall> first = source.Next();
  if (!first) {
    if (!source.status().ok()) return source.status();
    ReplayReport empty;
    empty.policy = policy.name;
    return empty;
  }
  if (options.workers == 0 || options.workers > 1024) {
    return Bad("workers is " + std::to_string(options.workers) + "; it must be from 1 to 1024");
  }
  auto run = std::make_unique<Run>(policy, simulation, options, first->time_ns);
  if (Status s = run->Open(); !s.ok()) return s;
  return run->Go(source, std::move(*first));
}

}  // namespace toolops
