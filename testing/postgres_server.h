// testing/postgres_server.h
//
// PostgresServer: a private PostgreSQL server for one test or benchmark. It
// lives in its own temporary directory (cluster from initdb, Unix socket,
// logs), listens on 127.0.0.1 on a port picked for it, and never touches a
// server the machine may already run. Durability is traded for speed
// (fsync=off): it is for tests only. Not part of the library.
//
// The binaries come from $TOOLOPS_PG_BIN when set, else from the newest
// /usr/lib/postgresql/*/bin, else from PATH. PostgreSQL refuses to run as
// root, so when the caller is root the server runs as the user "postgres"
// and the directory is handed to that user.
//
// Not safe for concurrent use: one thread drives it.

#ifndef TOOLOPS_TESTING_POSTGRES_SERVER_H_
#define TOOLOPS_TESTING_POSTGRES_SERVER_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "processes.h"
#include "toolops/status.h"

namespace toolops::testing {

class PostgresServer {
 public:
  // Creates nothing yet: Start() does the work.
  PostgresServer();
  // Kills the server if it runs and removes its directory.
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // Runs initdb on first use, then starts the server and waits until it
  // accepts queries. The first start picks a free port, and picks another
  // when the server cannot bind it; later starts reuse the port and data
  // (retrying the bind for a few seconds), so that clients reconnect to the
  // same address and find their rows. Returns FailedPrecondition naming what
  // is missing when PostgreSQL is not installed, and Unavailable with the tail
  // of the server's log when it does not come up. OK if already running.
  Status Start();

  // Fast shutdown (SIGINT: open sessions are ended, data is kept) and waits
  // for the server to exit. OK if not running.
  Status Stop();

  // SIGKILL to the server and every process it started (a crash). Start()
  // afterwards runs crash recovery on the same data.
  void Kill();

  // SIGSTOP / SIGCONT to the server and every process it started: a server
  // that hangs while its sockets stay open (the kernel still accepts
  // connections on them). REQUIRES: running().
  void Pause();
  void Resume();

  bool running();

  // Valid after the first successful Start(); unchanged by restarts.
  int port() const { return port_; }
  // A libpq connection string for the superuser "postgres" over TCP.
  std::string conninfo(const std::string& database = "postgres") const;
  // The server's log: everything it wrote since the first start.
  std::string log_path() const { return dir_.File("server.log"); }
  // The last `bytes` bytes of the log, for failure messages.
  std::string LogTail(size_t bytes = 2000) const;

 private:
  Status InitDb();
  // One attempt to start on port_; sets *bind_failed when the port was taken.
  Status StartOnce(bool* bind_failed);
  // Sends a signal to the postmaster and to each of its children.
  void SignalAll(int signal_number);

  TempDir dir_;
  std::string bin_dir_;
  std::string run_as_;  // "postgres" when running as root, else empty.
  bool initialised_ = false;
  int port_ = -1;
  ChildProcess server_;
};

}  // namespace toolops::testing

#endif  // TOOLOPS_TESTING_POSTGRES_SERVER_H_
