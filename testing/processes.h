// testing/processes.h
//
// What tests and benchmarks need to run real servers beside themselves:
// free ports, temporary directories, child processes that are always reaped,
// and waits for a port to accept connections. Not part of the library.

#ifndef TOOLOPS_TESTING_PROCESSES_H_
#define TOOLOPS_TESTING_PROCESSES_H_

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace toolops::testing {

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and
// released). Another process may take it before the caller does; servers
// started on it should be retried on a new port when they fail to bind.
int PickFreePort();

// True once something accepts TCP connections on 127.0.0.1:port, false when
// `timeout` passes first.
bool WaitForPort(int port, std::chrono::milliseconds timeout);

// The first executable named `name` on PATH or in `extra_dirs` (each may be a
// glob such as "/usr/lib/postgresql/*/bin"), or nullopt.
std::optional<std::string> FindProgram(const std::string& name,
                                       const std::vector<std::string>& extra_dirs = {});

// A directory under $TMPDIR (or /tmp) removed with its contents on
// destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "toolops");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A child process started with execv. The destructor kills it (SIGKILL) and
// reaps it if it is still running, so a failing test leaves no server behind.
class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;

  // Starts argv[0] (a path) with the given arguments. stdout and stderr go to
  // `log_path` (appended), or to /dev/null when it is empty. When
  // `run_as_user` is set and this process is root, the child switches to that
  // user first (PostgreSQL refuses to run as root). Returns false, with
  // errno's message in *error, when the process could not start.
  bool Start(const std::vector<std::string>& argv, const std::string& log_path = "",
             const std::string& run_as_user = "", std::string* error = nullptr);

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int signal_number);
  // Waits up to `timeout` for the process to exit; returns its wait status,
  // or nullopt if it is still running.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  // SIGTERM, a grace period, then SIGKILL; always reaps.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(5));

 private:
  pid_t pid_ = -1;
};

// Runs a program to completion and returns its exit status (-1 if it could
// not start or was killed); its output goes to `log_path` (or /dev/null).
int RunProgram(const std::vector<std::string>& argv, const std::string& log_path = "",
               const std::string& run_as_user = "");

// The whole content of a file, or "" when it cannot be read.
std::string ReadFileOrEmpty(const std::string& path);

}  // namespace toolops::testing

#endif  // TOOLOPS_TESTING_PROCESSES_H_
