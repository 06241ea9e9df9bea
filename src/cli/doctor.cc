// src/cli/doctor.cc
//
// Each check runs on a thread of its own and reports into a slot; the main
// thread waits for every slot until the common deadline. A check still
// running then (a store whose network calls ignore their timeouts, a DNS
// lookup that hangs) is reported as broken and its thread left behind: the
// command exits without joining it.

#include "cli/doctor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/cli_common.h"
#include "store/envelope.h"
#include "store/redis_connection.h"
#include "toolops/embedder.h"

namespace toolops::cli {

const char kDoctorUsage[] =
    "usage: toolops doctor [--config FILE] [--json] [--timeout SECONDS] [--model DIR]\n"
    "\n"
    "Checks that this set-up is healthy, every check at once:\n"
    "  config     the configuration file (and TOOLOPS__* variables) reads cleanly,\n"
    "             and every store a tool names is configured\n"
    "  store      each configured store: opened, and a probe key written, read back\n"
    "             and deleted (the round trip's latency is shown)\n"
    "  embedder   the semantic cache's model loads; two paraphrases come out\n"
    "             similar and an unrelated sentence does not\n"
    "  clock      the wall clock moves with the monotonic clock, and agrees with\n"
    "             each Redis (TIME) and PostgreSQL (now()) server: cached entries\n"
    "             carry wall-clock expiry instants between hosts\n"
    "  telemetry  the OTLP endpoint accepts a TCP connection; the metrics port\n"
    "             can be bound\n"
    "\n"
    "options:\n"
    "  --config FILE      the configuration (default: $TOOLOPS_CONFIG, else\n"
    "                     ./toolops.toml if present)\n"
    "  --json             one JSON object instead of the table\n"
    "  --timeout SECONDS  the longest any check may take (default 5); a check still\n"
    "                     running then is reported broken\n"
    "  --model DIR        the embedder's model (default: the bundled model, or\n"
    "                     $TOOLOPS_MODEL_DIR)\n"
    "\n"
    "Colour only on a terminal, never with NO_COLOR set.\n"
    "\n"
    "exit status: 0 everything healthy (warnings allowed), 1 something is broken\n"
    "(each broken line says what to do), 2 bad usage.\n";

std::string_view CheckStateName(CheckState state) {
  switch (state) {
    case CheckState::kOk:
      return "ok";
    case CheckState::kWarning:
      return "warning";
    case CheckState::kBroken:
      return "broken";
    case CheckState::kSkipped:
      return "skipped";
  }
  return "?";
}

bool DoctorReport::healthy() const {
  for (const CheckResult& c : checks) {
    if (c.state == CheckState::kBroken) return false;
  }
  return true;
}

namespace {

using SteadyClock = std::chrono::steady_clock;

double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

CheckResult Make(std::string name, CheckState state, std::string detail, std::string fix = "") {
  CheckResult r;
  r.name = std::move(name);
  r.state = state;
  r.detail = std::move(detail);
  r.fix = std::move(fix);
  return r;
}

// -- stores ------------------------------------------------------------------

std::string StoreLabel(const StoreConfig& store) {
  return "store " + store.name + " (" + store.type_name + ")";
}

std::string StoreFix(const StoreConfig& store, const Status& status) {
  const std::string at = " (" + store.where + ")";
  switch (status.code()) {
    case StatusCode::kPermissionDenied:
    case StatusCode::kUnauthenticated:
      return "check stores." + store.name + ".username / password" + at;
    case StatusCode::kInvalidArgument:
      return "correct the option named above in [stores." + store.name + "]" + at;
    case StatusCode::kFailedPrecondition:
      return "the data was written by a newer ToolOps: upgrade, or point stores." + store.name +
             " at another " + (store.type == StoreType::kSqlite ? "file" : "table");
    default:
      break;
  }
  switch (store.type) {
    case StoreType::kRedis:
      return "start the server, or correct stores." + store.name + ".url / host / port" + at;
    case StoreType::kPostgres:
      return "start the server, or correct stores." + store.name + ".url" + at;
    case StoreType::kSqlite:
      return "make the directory of stores." + store.name + ".path exist and be writable" + at;
    case StoreType::kMemory:
      return "correct the options of [stores." + store.name + "]" + at;
  }
  return "";
}

// The store's host and port, TLS and credentials, for a direct connection.
struct RedisTarget {
  redis::Endpoint endpoint;
  redis::ConnectOptions options;
  bool tls = false;
};

RedisTarget RedisTargetOf(const RedisStoreOptions& o) {
  RedisTarget t;
  t.endpoint.host = o.host;
  t.endpoint.port = o.port;
  t.options.username = o.username;
  t.options.password = o.password;
  t.options.db = o.db;
  t.tls = o.tls.enabled;
  std::string_view url = o.url;
  if (!url.empty()) {
    if (url.starts_with("rediss://")) {
      t.tls = true;
      url.remove_prefix(9);
    } else if (url.starts_with("redis://")) {
      url.remove_prefix(8);
    }
    if (size_t at = url.rfind('@'); at != std::string_view::npos) {
      std::string_view credentials = url.substr(0, at);
      url.remove_prefix(at + 1);
      size_t colon = credentials.find(':');
      if (colon == std::string_view::npos) {
        t.options.password = std::string(credentials);
      } else {
        t.options.username = std::string(credentials.substr(0, colon));
        t.options.password = std::string(credentials.substr(colon + 1));
      }
    }
    if (size_t slash = url.find('/'); slash != std::string_view::npos) {
      t.options.db = std::atoi(std::string(url.substr(slash + 1)).c_str());
      url = url.substr(0, slash);
    }
    if (size_t colon = url.rfind(':'); colon != std::string_view::npos && url.front() != '[') {
      t.endpoint.port = std::atoi(std::string(url.substr(colon + 1)).c_str());
      url = url.substr(0, colon);
    }
    if (!url.empty()) t.endpoint.host = std::string(url);
  }
  if (o.cluster) t.options.db = 0;
  t.options.connect_timeout = o.connect_timeout;
  t.options.io_timeout = o.io_timeout;
  t.options.tls_server_name = o.tls.server_name;
  return t;
}

// The server's wall clock minus ours, in seconds (ours taken at the middle of
// the round trip).
Result<double> RedisSkew(const StoreConfig& store) {
  RedisTarget t = RedisTargetOf(store.redis);
  redis::TlsContext tls;
  if (t.tls) {
    Result<redis::TlsContext> ctx =
        redis::NewTlsContext(store.redis.tls.ca_file, store.redis.tls.cert_file,
                             store.redis.tls.key_file, store.redis.tls.verify_peer);
    if (!ctx.ok()) return ctx.status();
    tls = std::move(ctx).value();
    t.options.tls = tls.get();
  }
  Result<std::unique_ptr<redis::Connection>> c = redis::Connection::Open(t.endpoint, t.options);
  if (!c.ok()) return c.status();
  double before = WallSeconds();
  Result<redis::Reply> r = (*c)->Run({"TIME"});
  double after = WallSeconds();
  if (!r.ok()) return r.status();
  if (!r->is_array() || r->size() != 2) {
    return Status(StatusCode::kInternal, "TIME answered " + r->Describe());
  }
  double server = std::atof(std::string((*r)[0].str()).c_str()) +
                  std::atof(std::string((*r)[1].str()).c_str()) / 1e6;
  return server - (before + after) / 2;
}

Result<double> PostgresSkew(const StoreConfig& store) {
  const std::string timeout = std::to_string(std::max<int64_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(store.postgres.connect_timeout).count()));
  const char* keys[] = {"dbname", "connect_timeout", nullptr};
  const char* values[] = {store.postgres.conninfo.c_str(), timeout.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  struct Closer {
    PGconn* c;
    ~Closer() { PQfinish(c); }
  } closer{conn};
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    return Status(StatusCode::kUnavailable, "cannot connect for the clock check");
  }
  double before = WallSeconds();
  PGresult* res = PQexec(conn, "SELECT extract(epoch from clock_timestamp())::float8");
  double after = WallSeconds();
  struct Clearer {
    PGresult* r;
    ~Clearer() { PQclear(r); }
  } clearer{res};
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
    return Status(StatusCode::kInternal, "clock_timestamp() failed");
  }
  return std::atof(PQgetvalue(res, 0, 0)) - (before + after) / 2;
}

CheckResult SkewCheck(const StoreConfig& store) {
  auto start = SteadyClock::now();
  Result<double> skew = store.type == StoreType::kRedis ? RedisSkew(store) : PostgresSkew(store);
  CheckResult r;
  r.name = "clock vs " + store.name;
  if (!skew.ok()) {
    r = Make(r.name, CheckState::kWarning,
             "could not read the server's time: " + std::string(skew.status().message()));
  } else {
    char text[96];
    std::snprintf(text, sizeof(text), "server clock %+.1fms from this host's", *skew * 1e3);
    double off = std::fabs(*skew);
    if (off > 5) {
      r = Make(r.name, CheckState::kBroken, text,
               "synchronise the clocks (NTP): shared entries expire early or late by the skew");
    } else if (off > 0.5) {
      r = Make(r.name, CheckState::kWarning, text,
               "synchronise the clocks (NTP): shared entries expire early or late by the skew");
    } else {
      r = Make(r.name, CheckState::kOk, text);
    }
  }
  r.seconds = SecondsSince(start);
  return r;
}

std::vector<CheckResult> StoreChecks(const StoreConfig& config) {
  std::vector<CheckResult> out;
  auto start = SteadyClock::now();
  Result<std::unique_ptr<Store>> opened = config.Open(RealClock());
  double open_seconds = SecondsSince(start);
  if (!opened.ok()) {
    CheckResult r = Make(StoreLabel(config), CheckState::kBroken,
                         std::string(opened.status().message()), StoreFix(config, opened.status()));
    r.seconds = open_seconds;
    out.push_back(std::move(r));
    return out;
  }
  std::unique_ptr<Store> store = std::move(opened).value();

  // The probe: a key of no tool (no tool prefix), written, read, deleted.
  static std::atomic<uint64_t> counter{0};
  const std::string key = "toolops-doctor-probe:" + std::to_string(getpid()) + ":" +
                          std::to_string(counter.fetch_add(1)) + ":" +
                          std::to_string(UnixNowNanos());
  const std::string payload = "toolops doctor probe";
  Clock* clock = RealClock();
  auto probe_start = SteadyClock::now();
  TimePoint now = clock->Now();
  KeyRef ref = KeyRef::Of(key);
  Status put = store->Put(ref,
                          StoredValue{Bytes::Copy(payload), now + std::chrono::seconds(30),
                                      now + std::chrono::seconds(30)},
                          now);
  std::optional<StoredValue> got;
  bool erased = false;
  if (put.ok()) {
    got = store->Get(ref, clock->Now());
    erased = store->Erase(ref);
  }
  double probe_seconds = SecondsSince(probe_start);
  CheckResult r;
  r.name = StoreLabel(config);
  if (!put.ok()) {
    r = Make(r.name, CheckState::kBroken,
             "opened, but writing a probe failed: " + std::string(put.message()),
             StoreFix(config, put));
  } else if (!got || got->value.view() != payload) {
    r = Make(r.name, CheckState::kBroken,
             got ? "a probe read back different bytes" : "a probe written was not read back",
             StoreFix(config, Status(StatusCode::kUnavailable, "")));
  } else if (!erased) {
    r = Make(r.name, CheckState::kWarning, "a probe could not be deleted",
             "check that the store's user may delete keys");
  } else {
    char detail[160];
    std::snprintf(
        detail, sizeof(detail), "put/get/delete %s (open %s)%s",
        FormatSeconds(probe_seconds).c_str(), FormatSeconds(open_seconds).c_str(),
        config.type == StoreType::kMemory ? "; in-process: each process has its own" : "");
    r = Make(r.name, CheckState::kOk, detail);
  }
  r.seconds = SecondsSince(start);
  out.push_back(std::move(r));
  if (out.back().state == CheckState::kOk &&
      (config.type == StoreType::kRedis || config.type == StoreType::kPostgres)) {
    out.push_back(SkewCheck(config));
  }
  return out;
}

// -- embedder ----------------------------------------------------------------

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) sum += double(a[i]) * double(b[i]);
  return sum;
}

CheckResult EmbedderCheck(const std::string& model_dir, bool needed) {
  auto start = SteadyClock::now();
  const std::string dir = model_dir.empty() ? DefaultModelDirectory() : model_dir;
  CheckState failure = needed ? CheckState::kBroken : CheckState::kWarning;
  Result<std::unique_ptr<Embedder>> embedder = LoadStaticEmbedder(dir);
  if (!embedder.ok()) {
    CheckResult r = Make("embedder", failure, std::string(embedder.status().message()),
                         "install the model (it ships with the package) or set "
                         "TOOLOPS_MODEL_DIR to its directory");
    r.seconds = SecondsSince(start);
    return r;
  }
  Result<std::vector<float>> a = (*embedder)->Embed("What is the weather like in Paris today?");
  Result<std::vector<float>> b = (*embedder)->Embed("How is today's weather in Paris?");
  Result<std::vector<float>> c = (*embedder)->Embed("Recommend a recipe for sourdough bread.");
  CheckResult r;
  if (!a.ok() || !b.ok() || !c.ok()) {
    r = Make("embedder", failure, "the model loaded but could not embed a sentence",
             "reinstall the model");
  } else {
    double similar = Dot(*a, *b);
    double unrelated = Dot(*a, *c);
    char detail[200];
    std::snprintf(detail, sizeof(detail), "%s, %zu dims; paraphrases %.2f, unrelated %.2f%s",
                  (*embedder)->model_id().c_str(), (*embedder)->dims(), similar, unrelated,
                  needed ? "" : " (no tool uses it)");
    if (similar >= 0.7 && unrelated < similar - 0.2) {
      r = Make("embedder", CheckState::kOk, detail);
    } else {
      r = Make("embedder", failure, std::string(detail) + ": paraphrases do not stand out",
               "the model is not fit for matching questions; use the bundled model");
    }
  }
  r.seconds = SecondsSince(start);
  return r;
}

// -- clock -------------------------------------------------------------------

CheckResult ClockCheck() {
  auto start = SteadyClock::now();
  auto wall0 = std::chrono::system_clock::now();
  auto steady0 = SteadyClock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto wall1 = std::chrono::system_clock::now();
  auto steady1 = SteadyClock::now();
  double wall = std::chrono::duration<double>(wall1 - wall0).count();
  double steady = std::chrono::duration<double>(steady1 - steady0).count();
  double year =
      1970 + std::chrono::duration<double>(wall1.time_since_epoch()).count() / (365.2425 * 86400);
  char detail[160];
  std::snprintf(detail, sizeof(detail), "wall clock moved %s while the monotonic clock moved %s",
                FormatSeconds(wall).c_str(), FormatSeconds(steady).c_str());
  CheckResult r;
  if (year < 2024) {
    r = Make("clock", CheckState::kBroken, "the wall clock reads a date before 2024",
             "set the system time (NTP): cached entries carry wall-clock expiry instants");
  } else if (std::fabs(wall - steady) > 0.25) {
    r = Make("clock", CheckState::kWarning, std::string(detail) + ": the wall clock jumped",
             "run a time daemon that slews instead of stepping (chrony, systemd-timesyncd)");
  } else {
    r = Make("clock", CheckState::kOk, detail);
  }
  r.seconds = SecondsSince(start);
  return r;
}

// -- telemetry ---------------------------------------------------------------

// host and port of an http(s) URL.
bool HostPortOf(const std::string& url, std::string* host, int* port) {
  std::string_view rest = url;
  *port = 4318;
  if (rest.starts_with("https://")) {
    rest.remove_prefix(8);
    *port = 443;
  } else if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else {
    return false;
  }
  rest = rest.substr(0, rest.find('/'));
  if (rest.empty()) return false;
  if (rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return false;
    *host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (rest.starts_with(":")) *port = std::atoi(std::string(rest.substr(1)).c_str());
  } else if (size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    *host = std::string(rest.substr(0, colon));
    *port = std::atoi(std::string(rest.substr(colon + 1)).c_str());
  } else {
    *host = std::string(rest);
  }
  return *port > 0 && *port < 65536;
}

// Connects with a timeout; an empty string on success, else why not.
std::string TcpConnect(const std::string& host, int port, Duration timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) return "cannot resolve '" + host + "': " + gai_strerror(rc);
  std::string error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int c = connect(fd, a->ai_addr, a->ai_addrlen);
    if (c != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int ms =
          static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count());
      int ready = poll(&p, 1, ms);
      if (ready == 1) {
        int so_error = 0;
        socklen_t len = sizeof(so_error);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
        c = so_error == 0 ? 0 : -1;
        errno = so_error;
      } else {
        c = -1;
        errno = ETIMEDOUT;
      }
    }
    if (c == 0) {
      close(fd);
      freeaddrinfo(found);
      return "";
    }
    error = std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(found);
  return error;
}

CheckResult OtlpCheck(const TelemetryConfig& telemetry, Duration timeout) {
  auto start = SteadyClock::now();
  std::string endpoint = telemetry.otlp_endpoint;
  std::string source = "telemetry.otlp_endpoint";
  for (const char* var : {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"}) {
    if (!endpoint.empty()) break;
    if (const char* v = std::getenv(var); v != nullptr && *v != '\0') {
      endpoint = v;
      source = var;
    }
  }
  if (endpoint.empty()) {
    return Make("otlp endpoint", CheckState::kSkipped,
                "not configured (telemetry.otlp_endpoint, OTEL_EXPORTER_OTLP_ENDPOINT)");
  }
  std::string host;
  int port = 0;
  CheckResult r;
  if (!HostPortOf(endpoint, &host, &port)) {
    r = Make("otlp endpoint", CheckState::kBroken,
             source + " is '" + endpoint + "', not an http:// or https:// URL",
             "write it as http://HOST:4318");
  } else if (std::string error = TcpConnect(host, port, timeout); !error.empty()) {
    r = Make("otlp endpoint", CheckState::kBroken,
             host + ":" + std::to_string(port) + " (" + source + "): " + error,
             "start the collector, or correct " + source);
  } else {
    r = Make("otlp endpoint", CheckState::kOk,
             host + ":" + std::to_string(port) + " accepts connections");
  }
  r.seconds = SecondsSince(start);
  return r;
}

CheckResult MetricsPortCheck(const TelemetryConfig& telemetry) {
  auto start = SteadyClock::now();
  if (telemetry.metrics_port == 0) {
    return Make("metrics port", CheckState::kSkipped, "off (telemetry.metrics_port is not set)");
  }
  const std::string where = telemetry.metrics_host + ":" + std::to_string(telemetry.metrics_port);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  CheckResult r;
  if (int rc = getaddrinfo(telemetry.metrics_host.c_str(),
                           std::to_string(telemetry.metrics_port).c_str(), &hints, &found);
      rc != 0) {
    r = Make("metrics port", CheckState::kBroken,
             "cannot resolve telemetry.metrics_host '" + telemetry.metrics_host +
                 "': " + gai_strerror(rc),
             "set telemetry.metrics_host to an address of this host (127.0.0.1, 0.0.0.0)");
  } else {
    int fd = socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int bound = fd < 0 ? -1 : bind(fd, found->ai_addr, found->ai_addrlen);
    int error = errno;
    if (fd >= 0) close(fd);
    freeaddrinfo(found);
    if (bound == 0) {
      r = Make("metrics port", CheckState::kOk, where + " can be bound");
    } else if (error == EADDRINUSE) {
      r = Make("metrics port", CheckState::kWarning,
               where +
                   " is in use (by a running agent serving its metrics, or by another "
                   "program)",
               "if it is the agent: toolops stats --endpoint http://" + where +
                   "/metrics; otherwise choose another telemetry.metrics_port");
    } else {
      r = Make("metrics port", CheckState::kBroken,
               where + " cannot be bound: " + std::strerror(error),
               "choose a port above 1024 and an address of this host");
    }
  }
  r.seconds = SecondsSince(start);
  return r;
}

// -- config ------------------------------------------------------------------

std::vector<CheckResult> ConfigChecks(const Config& config) {
  std::vector<CheckResult> out;
  std::string detail =
      config.path.empty() ? "no file ($TOOLOPS_CONFIG unset, no ./toolops.toml)" : config.path;
  detail += ": " + std::to_string(config.stores.size()) + " stores, " +
            std::to_string(config.tools.size()) + " tools";
  if (!config.environment.empty()) {
    detail += ", " + std::to_string(config.environment.size()) + " TOOLOPS__ variables";
  }
  out.push_back(
      Make("config", config.path.empty() ? CheckState::kWarning : CheckState::kOk, detail,
           config.path.empty() ? "write a toolops.toml, or point TOOLOPS_CONFIG at one" : ""));
  // Every store a tool names must exist ("memory" exists in every process).
  for (const auto& [name, tool] : config.tools) {
    ToolPolicy policy;
    tool.ApplyTo(&policy);
    for (const auto& [field, store] :
         {std::pair<std::string, std::string>{"cache.store", policy.cache.store},
          {"cache.shared_store", policy.cache.shared_store},
          {"breaker.shared_store", policy.breaker.shared_store}}) {
      if (store.empty() || store == "memory" || config.stores.count(store)) continue;
      std::string known;
      for (const auto& [n, s] : config.stores) known += (known.empty() ? "" : ", ") + n;
      out.push_back(Make(
          "tool " + name, CheckState::kBroken,
          "tools." + name + "." + field + " names store '" + store + "', which is not configured",
          "add [stores." + store + "] or name one of: memory" +
              (known.empty() ? "" : ", " + known) + " (" + tool.where + ")"));
    }
  }
  return out;
}

// -- running the checks ------------------------------------------------------

struct Slot {
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;
  std::vector<CheckResult> results;
  std::string name;  // For a check that does not finish.
  std::string fix;
};

}  // namespace

DoctorReport RunDoctor(const Result<Config>& loaded, const DoctorOptions& options) {
  auto start = SteadyClock::now();
  DoctorReport report;
  if (!loaded.ok()) {
    report.checks.push_back(Make("config", CheckState::kBroken,
                                 std::string(loaded.status().message()),
                                 "correct the file at the line named (toolops doctor --config "
                                 "FILE checks another file)"));
  }
  const Config empty;
  const Config& config = loaded.ok() ? *loaded : empty;
  report.config_path = config.path;
  if (loaded.ok()) {
    for (CheckResult& c : ConfigChecks(config)) report.checks.push_back(std::move(c));
  }

  // Start every check on its own thread.
  std::vector<std::shared_ptr<Slot>> slots;
  auto launch = [&](std::string name, std::string fix,
                    std::function<std::vector<CheckResult>()> run) {
    auto slot = std::make_shared<Slot>();
    slot->name = std::move(name);
    slot->fix = std::move(fix);
    slots.push_back(slot);
    std::thread([slot, run = std::move(run)] {
      std::vector<CheckResult> results = run();
      std::lock_guard<std::mutex> lock(slot->mu);
      slot->results = std::move(results);
      slot->done = true;
      slot->done_cv.notify_all();
    }).detach();
  };
  if (loaded.ok()) {
    for (const auto& [name, store] : config.stores) {
      launch(StoreLabel(store), StoreFix(store, Status(StatusCode::kUnavailable, "")),
             [store = store] { return StoreChecks(store); });
    }
  }
  bool semantic = false;
  for (const auto& [name, tool] : config.tools) {
    ToolPolicy policy;
    tool.ApplyTo(&policy);
    semantic = semantic || !policy.cache.semantic.params.empty();
  }
  launch("embedder", "check the model directory (TOOLOPS_MODEL_DIR)",
         [dir = options.model_dir, semantic] {
           return std::vector<CheckResult>{EmbedderCheck(dir, semantic)};
         });
  launch("clock", "", [] { return std::vector<CheckResult>{ClockCheck()}; });
  launch("otlp endpoint", "start the collector, or correct telemetry.otlp_endpoint",
         [telemetry = config.telemetry, timeout = options.timeout] {
           return std::vector<CheckResult>{OtlpCheck(telemetry, timeout)};
         });
  launch("metrics port", "", [telemetry = config.telemetry] {
    return std::vector<CheckResult>{MetricsPortCheck(telemetry)};
  });

  // Collect, up to the deadline.
  const auto deadline = start + options.timeout;
  for (const std::shared_ptr<Slot>& slot : slots) {
    std::unique_lock<std::mutex> lock(slot->mu);
    if (slot->done_cv.wait_until(lock, deadline, [&] { return slot->done; })) {
      for (CheckResult& c : slot->results) report.checks.push_back(std::move(c));
    } else {
      CheckResult r =
          Make(slot->name, CheckState::kBroken,
               "did not finish within " +
                   FormatSeconds(std::chrono::duration<double>(options.timeout).count()),
               slot->fix.empty() ? "raise --timeout, or find what blocks it" : slot->fix);
      r.seconds = SecondsSince(start);
      report.checks.push_back(std::move(r));
      report.abandoned = true;
    }
  }
  report.seconds = SecondsSince(start);
  return report;
}

std::string FormatDoctorTable(const DoctorReport& report, bool colour) {
  Table table({"CHECK", "STATUS", "TIME", "DETAIL"});
  for (const CheckResult& c : report.checks) {
    Colour tint = Colour::kGreen;
    if (c.state == CheckState::kWarning) tint = Colour::kYellow;
    if (c.state == CheckState::kBroken) tint = Colour::kRed;
    if (c.state == CheckState::kSkipped) tint = Colour::kDim;
    std::string state(CheckStateName(c.state));
    if (c.state == CheckState::kBroken) state = "BROKEN";
    std::string detail = c.detail;
    // A multi-line detail (the configuration's errors) continues indented.
    for (size_t at = detail.find('\n'); at != std::string::npos; at = detail.find('\n', at + 1)) {
      detail.insert(at + 1, "    ");
    }
    table.Add({c.name, Paint(state, tint, colour),
               c.state == CheckState::kSkipped ? "" : FormatSeconds(c.seconds), detail});
  }
  std::string out = table.Render({2});
  bool any_fix = false;
  for (const CheckResult& c : report.checks) {
    if (c.fix.empty() || c.state == CheckState::kOk || c.state == CheckState::kSkipped) continue;
    if (!any_fix) out += "\nwhat to do:\n";
    any_fix = true;
    out += "  " + Paint(c.name, Colour::kBold, colour) + ": " + c.fix + "\n";
  }
  out += "\n";
  out += report.healthy() ? Paint("healthy", Colour::kGreen, colour)
                          : Paint("broken", Colour::kRed, colour);
  out += " (" + FormatSeconds(report.seconds) + ")\n";
  return out;
}

std::string FormatDoctorJson(const DoctorReport& report) {
  nlohmann::ordered_json checks = nlohmann::ordered_json::array();
  for (const CheckResult& c : report.checks) {
    nlohmann::ordered_json j = {{"name", c.name},
                                {"status", std::string(CheckStateName(c.state))},
                                {"seconds", c.seconds},
                                {"detail", c.detail}};
    if (!c.fix.empty() && c.state != CheckState::kOk) j["fix"] = c.fix;
    checks.push_back(std::move(j));
  }
  nlohmann::ordered_json out = {{"healthy", report.healthy()},
                                {"config", report.config_path},
                                {"seconds", report.seconds},
                                {"checks", std::move(checks)}};
  return out.dump(2) + "\n";
}

int DoctorMain(const std::vector<std::string>& args) {
  Options options({"--json", "-h", "--help"}, {"--config", "--timeout", "--model"});
  if (std::string error = options.Parse(args); !error.empty()) {
    return UsageError(error, kDoctorUsage);
  }
  if (options.Has("-h") || options.Has("--help")) {
    std::fputs(kDoctorUsage, stdout);
    return kExitOk;
  }
  if (!options.positional().empty()) {
    return UsageError("doctor takes no arguments (got '" + options.positional()[0] + "')",
                      kDoctorUsage);
  }
  DoctorOptions doctor;
  if (auto t = options.Get("--timeout")) {
    char* end = nullptr;
    double seconds = std::strtod(t->c_str(), &end);
    if (t->empty() || end != t->c_str() + t->size() || !(seconds > 0 && seconds <= 3600)) {
      return UsageError("--timeout needs a number of seconds above 0 (got '" + *t + "')",
                        kDoctorUsage);
    }
    doctor.timeout = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(seconds));
  }
  if (auto m = options.Get("--model")) doctor.model_dir = *m;
  Result<Config> config = LoadCliConfig(options.Get("--config"));
  DoctorReport report = RunDoctor(config, doctor);
  std::string text = options.Has("--json") ? FormatDoctorJson(report)
                                           : FormatDoctorTable(report, UseColour(stdout));
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
  int code = report.healthy() ? kExitOk : kExitFailed;
  // A check left running must not hold the exit (nor run into destructors).
  if (report.abandoned) std::_Exit(code);
  return code;
}

}  // namespace toolops::cli
