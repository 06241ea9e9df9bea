// src/observe/stats_publisher.cc
//
// Per-process snapshots of the metrics, published to a shared store's
// StatsBoard. The snapshot is the Prometheus text of the process (the same
// names `toolops stats` reads from an endpoint), trimmed of comments and of
// zero series, so that the command sums stores and endpoints alike.

#include "toolops/stats_publisher.h"

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <random>
#include <string_view>
#include <thread>

#include "base/mutex.h"
#include "toolops/metrics.h"

namespace toolops {
namespace {

// How many intervals a snapshot outlives its publication.
constexpr int kLifeInIntervals = 3;

std::string NewProcessId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  std::random_device random;
  char suffix[17];
  std::snprintf(suffix, sizeof(suffix), "%08x%08x", random(), random());
  return std::string(host) + ":" + std::to_string(getpid()) + ":" + suffix;
}

// Whether a series line's value is zero ("name{labels} 0").
bool IsZeroSeries(std::string_view line) {
  size_t space = line.rfind(' ');
  if (space == std::string_view::npos) return false;
  std::string_view value = line.substr(space + 1);
  return value == "0" || value == "0.0" || value == "-0";
}

}  // namespace

StatsBoard* StatsBoardOf(Store& store) { return dynamic_cast<StatsBoard*>(&store); }

class StatsPublisher::Impl {
 public:
  Impl(std::shared_ptr<Store> store, StatsBoard* board, Duration interval)
      : store_(std::move(store)), board_(board), interval_(interval), id_(NewProcessId()) {}

  ~Impl() {
    {
      MutexLock lock(&mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // Starts the thread that publishes every interval until destruction.
  void Run() {
    thread_ = std::thread([this] {
      while (true) {
        {
          std::unique_lock<Mutex> lock(mu_);
          mu_.AssertHeld();  // The lock above holds it.
          wake_.wait_for(lock, interval_,
                         [this]() TOOLOPS_NO_THREAD_SAFETY_ANALYSIS { return stopping_; });
          if (stopping_) return;
        }
        (void)Publish();
      }
    });
  }

  Status Publish() {
    Status s = board_->Publish(id_, PublishedStatsText(), interval_ * kLifeInIntervals);
    (s.ok() ? published_ : failures_).fetch_add(1, std::memory_order_relaxed);
    return s;
  }

  // Constant after construction.
  const std::shared_ptr<Store> store_;
  StatsBoard* const board_;
  const Duration interval_;
  const std::string id_;

  std::atomic<uint64_t> published_{0};
  std::atomic<uint64_t> failures_{0};

  Mutex mu_;
  std::condition_variable_any wake_;
  bool stopping_ TOOLOPS_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

std::string PublishedStatsText() {
  std::string text = PrometheusText();
  std::string out;
  out.reserve(text.size() / 2);
  std::string_view rest(text);
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    if (line.empty() || line.front() == '#') continue;
    // The breaker's state stays: it names the tool even before any call.
    if (IsZeroSeries(line) && !line.starts_with("toolops_breaker_state")) continue;
    out += line;
    out += '\n';
  }
  return out;
}

Result<std::unique_ptr<StatsPublisher>> StatsPublisher::Start(std::shared_ptr<Store> store,
                                                              Duration interval) {
  if (store == nullptr) {
    return Status(StatusCode::kInvalidArgument, "StatsPublisher needs a store");
  }
  StatsBoard* board = StatsBoardOf(*store);
  if (board == nullptr) {
    return Status(
        StatusCode::kInvalidArgument,
        "store '" + std::string(store->name()) +
            "' cannot carry statistics; publish them to a SQLite, Redis or PostgreSQL store");
  }
  if (interval <= Duration::zero()) {
    return Status(StatusCode::kInvalidArgument,
                  "the statistics interval must be positive (10s is a good start)");
  }
  auto impl = std::make_unique<Impl>(std::move(store), board, interval);
  (void)impl->Publish();
  impl->Run();
  return std::unique_ptr<StatsPublisher>(new StatsPublisher(std::move(impl)));
}

StatsPublisher::StatsPublisher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StatsPublisher::~StatsPublisher() = default;

Status StatsPublisher::PublishNow() { return impl_->Publish(); }
const std::string& StatsPublisher::process_id() const { return impl_->id_; }
const Store& StatsPublisher::store() const { return *impl_->store_; }
Duration StatsPublisher::interval() const { return impl_->interval_; }
uint64_t StatsPublisher::published() const {
  return impl_->published_.load(std::memory_order_relaxed);
}
uint64_t StatsPublisher::failures() const {
  return impl_->failures_.load(std::memory_order_relaxed);
}

Result<std::vector<std::string>> ReadPublishedStats(Store& store) {
  StatsBoard* board = StatsBoardOf(store);
  if (board == nullptr) {
    return Status(
        StatusCode::kInvalidArgument,
        "store '" + std::string(store.name()) +
            "' holds no statistics; processes publish them to SQLite, Redis or PostgreSQL "
            "stores (telemetry.stats_store)");
  }
  return board->Snapshots();
}

}  // namespace toolops
