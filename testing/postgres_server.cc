// testing/postgres_server.cc

#include "postgres_server.h"

#include <glob.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

namespace toolops::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

// How long a server may take to accept queries after it was started.
constexpr auto kStartTimeout = seconds(60);
// How long a restart keeps retrying a port that is still taken.
constexpr auto kRebindTimeout = seconds(10);
constexpr int kPortAttempts = 5;

// The version number in a path like /usr/lib/postgresql/15/bin (0 if none).
int VersionOf(const std::string& dir) {
  size_t end = dir.rfind("/bin");
  size_t begin = dir.rfind('/', end == std::string::npos ? end : end - 1);
  if (end == std::string::npos || begin == std::string::npos) return 0;
  return std::atoi(dir.c_str() + begin + 1);
}

bool HasServerBinaries(const std::string& dir) {
  return access((dir + "/initdb").c_str(), X_OK) == 0 &&
         access((dir + "/postgres").c_str(), X_OK) == 0;
}

// The directory holding initdb and postgres, or "".
std::string FindBinDir() {
  if (const char* forced = std::getenv("TOOLOPS_PG_BIN"); forced != nullptr && *forced != '\0') {
    return HasServerBinaries(forced) ? forced : "";
  }
  std::vector<std::string> dirs;
  glob_t matches{};
  if (glob("/usr/lib/postgresql/*/bin", 0, nullptr, &matches) == 0) {
    for (size_t i = 0; i < matches.gl_pathc; ++i) dirs.push_back(matches.gl_pathv[i]);
  }
  globfree(&matches);
  // Newest first; glob's order is lexical, which puts 9 after 15.
  std::sort(dirs.begin(), dirs.end(),
            [](const std::string& a, const std::string& b) { return VersionOf(a) > VersionOf(b); });
  for (const std::string& dir : dirs) {
    if (HasServerBinaries(dir)) return dir;
  }
  if (std::optional<std::string> postgres = FindProgram("postgres")) {
    std::string dir = postgres->substr(0, postgres->rfind('/'));
    if (HasServerBinaries(dir)) return dir;
  }
  return "";
}

// The processes whose parent is `parent`, from /proc.
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    // Field 4 of stat is the parent; field 2 (the command) may hold spaces
    // and parentheses, so read after its last ')'.
    std::string stat = ReadFileOrEmpty(entry.path().string() + "/stat");
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == parent) {
      children.push_back(static_cast<pid_t>(std::atoi(name.c_str())));
    }
  }
  return children;
}

Status Unavailable(std::string message) {
  return Status(StatusCode::kUnavailable, std::move(message), Guard::kNone);
}

}  // namespace

PostgresServer::PostgresServer() : dir_("toolops-pg") {}

PostgresServer::~PostgresServer() {
  // The whole group, so that no backend outlives the directory.
  SignalAll(SIGKILL);
}

std::string PostgresServer::conninfo(const std::string& database) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=" + database +
         " sslmode=disable";
}

std::string PostgresServer::LogTail(size_t bytes) const {
  std::string log = ReadFileOrEmpty(log_path());
  return log.size() > bytes ? "..." + log.substr(log.size() - bytes) : log;
}

bool PostgresServer::running() { return server_.running(); }

void PostgresServer::SignalAll(int signal_number) {
  // Each backend makes itself a process group of its own, so a signal to
  // the server's group reaches the postmaster only. The postmaster is
  // stopped first, so that it starts no process while its children are
  // listed, and, when killed, last (the children are its until it dies).
  pid_t postmaster = server_.pid();
  if (postmaster <= 0) return;
  kill(postmaster, SIGSTOP);
  for (pid_t child : ChildrenOf(postmaster)) kill(child, signal_number);
  kill(postmaster, signal_number);
  if (signal_number != SIGSTOP && signal_number != SIGKILL) kill(postmaster, SIGCONT);
}

Status PostgresServer::InitDb() {
  bin_dir_ = FindBinDir();
  if (bin_dir_.empty()) {
    return Status(StatusCode::kFailedPrecondition,
                  "PostgreSQL server binaries (initdb, postgres) not found in $TOOLOPS_PG_BIN, "
                  "/usr/lib/postgresql/*/bin or PATH; install the postgresql package",
                  Guard::kNone);
  }

  // PostgreSQL refuses root: hand the directory to the postgres user.
  if (geteuid() == 0) {
    passwd* pw = getpwnam("postgres");
    if (pw == nullptr) {
      return Status(StatusCode::kFailedPrecondition,
                    "running as root, and there is no user 'postgres' to run the server as",
                    Guard::kNone);
    }
    run_as_ = "postgres";
    if (chown(dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return Unavailable("chown " + dir_.path() + ": " + std::strerror(errno));
    }
  }
  std::string sockets = dir_.File("sock");
  if (mkdir(sockets.c_str(), 0700) != 0) {
    return Unavailable("mkdir " + sockets + ": " + std::strerror(errno));
  }
  if (!run_as_.empty()) {
    passwd* pw = getpwnam(run_as_.c_str());
    if (pw == nullptr || chown(sockets.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return Unavailable("chown " + sockets + ": " + std::strerror(errno));
    }
  }

  std::string log = dir_.File("initdb.log");
  int rc = RunProgram({bin_dir_ + "/initdb", "-D", dir_.File("data"), "-U", "postgres", "-A",
                       "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"},
                      log, run_as_);
  if (rc != 0) {
    return Unavailable("initdb failed (exit " + std::to_string(rc) + ")" +
                       (run_as_.empty() ? "" : " as user " + run_as_) + ":\n" +
                       ReadFileOrEmpty(log));
  }
  initialised_ = true;
  return Status::Ok();
}

Status PostgresServer::StartOnce(bool* bind_failed) {
  *bind_failed = false;
  size_t log_start = ReadFileOrEmpty(log_path()).size();
  std::vector<std::string> argv = {
      bin_dir_ + "/postgres",
      "-D",
      dir_.File("data"),
      "-p",
      std::to_string(port_),
      "-k",
      dir_.File("sock"),
      "-c",
      "listen_addresses=127.0.0.1",
      // Speed over durability: a crash of the machine may lose this cluster,
      // which only tests use. A crash of the server loses nothing committed.
      "-c",
      "fsync=off",
      "-c",
      "full_page_writes=off",
      "-c",
      "shared_buffers=16MB",
      "-c",
      "max_connections=100",
      "-c",
      "huge_pages=off",
      "-c",
      "timezone=UTC",
  };
  std::string error;
  if (!server_.Start(argv, log_path(), run_as_, &error)) {
    return Unavailable("cannot start postgres: " + error);
  }

  const std::string info = conninfo() + " connect_timeout=2";
  const auto deadline = steady_clock::now() + kStartTimeout;
  while (steady_clock::now() < deadline) {
    if (!server_.running()) {
      std::string log = ReadFileOrEmpty(log_path());
      std::string tail = log.size() > log_start ? log.substr(log_start) : "";
      *bind_failed = tail.find("could not bind") != std::string::npos ||
                     tail.find("Address already in use") != std::string::npos;
      return Unavailable("postgres exited at start on port " + std::to_string(port_) + ":\n" +
                         tail);
    }
    if (PQping(info.c_str()) == PQPING_OK) return Status::Ok();
    std::this_thread::sleep_for(milliseconds(20));
  }
  SignalAll(SIGKILL);
  server_.Wait(seconds(10));
  return Unavailable("postgres did not accept queries within " +
                     std::to_string(kStartTimeout.count()) + " s:\n" + LogTail());
}

Status PostgresServer::Start() {
  if (server_.running()) return Status::Ok();
  if (!initialised_) {
    Status initialised = InitDb();
    if (!initialised.ok()) return initialised;
  }

  bool bind_failed = false;
  if (port_ < 0) {
    // First start: another process may take the free port before the server
    // binds it; then try another.
    Status status;
    for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
      port_ = PickFreePort();
      if (port_ <= 0) return Unavailable("no free TCP port on 127.0.0.1");
      status = StartOnce(&bind_failed);
      if (status.ok() || !bind_failed) break;
    }
    if (!status.ok()) port_ = -1;
    return status;
  }

  // Restart: clients know this port, so wait for it rather than move.
  const auto deadline = steady_clock::now() + kRebindTimeout;
  while (true) {
    Status status = StartOnce(&bind_failed);
    if (status.ok() || !bind_failed || steady_clock::now() >= deadline) return status;
    std::this_thread::sleep_for(milliseconds(100));
  }
}

Status PostgresServer::Stop() {
  if (!server_.running()) return Status::Ok();
  // SIGINT is the fast shutdown: SIGTERM would wait for every client to
  // disconnect, and tests stop the server under open connections.
  server_.Signal(SIGINT);
  if (server_.Wait(seconds(30)).has_value()) return Status::Ok();
  Kill();
  return Unavailable("postgres did not stop within 30 s; killed it:\n" + LogTail());
}

void PostgresServer::Kill() {
  SignalAll(SIGKILL);
  server_.Wait(seconds(30));
}

void PostgresServer::Pause() { SignalAll(SIGSTOP); }

void PostgresServer::Resume() { SignalAll(SIGCONT); }

}  // namespace toolops::testing
