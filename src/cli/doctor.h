// src/cli/doctor.h
//
// `toolops doctor`: is this set-up healthy? It checks the configuration,
// reaches every configured store with a real round trip (put, get and delete
// of a probe key), loads the embedder and runs a self-test, checks the clock
// (wall against monotonic, and against each Redis / PostgreSQL server), and
// checks the telemetry endpoints. Checks run concurrently, each bounded by a
// timeout, so that a dead store cannot make the command hang.

#ifndef TOOLOPS_CLI_DOCTOR_H_
#define TOOLOPS_CLI_DOCTOR_H_

#include <string>
#include <vector>

#include "toolops/clock.h"
#include "toolops/config.h"
#include "toolops/status.h"

namespace toolops::cli {

extern const char kDoctorUsage[];

enum class CheckState { kOk, kWarning, kBroken, kSkipped };
std::string_view CheckStateName(CheckState state);

struct CheckResult {
  std::string name;  // "store shared (redis)", "embedder", "clock", ...
  CheckState state = CheckState::kOk;
  double seconds = 0;  // How long the check took.
  std::string detail;  // What was found.
  std::string fix;     // For warnings and broken checks: what to do.
};

struct DoctorOptions {
  // The longest any one check may take; a check still running then is
  // reported broken ("did not finish").
  Duration timeout = std::chrono::seconds(5);
  // The embedder's model directory; empty: DefaultModelDirectory().
  std::string model_dir;
};

struct DoctorReport {
  std::string config_path;
  std::vector<CheckResult> checks;
  double seconds = 0;
  // Some check was still running at its timeout (its thread is left
  // behind: the caller should exit without waiting for it).
  bool abandoned = false;

  bool healthy() const;
};

// Runs every check. `config` is what LoadConfig returned: a failed load is
// one broken check, and the checks that need the configuration are skipped.
// Blocks for at most about options.timeout.
DoctorReport RunDoctor(const Result<Config>& config, const DoctorOptions& options);

std::string FormatDoctorTable(const DoctorReport& report, bool colour);
std::string FormatDoctorJson(const DoctorReport& report);

// The command: parses `args` (after "doctor"), runs, prints; returns the exit
// code (0 healthy, 1 something broken, 2 bad usage).
int DoctorMain(const std::vector<std::string>& args);

}  // namespace toolops::cli

#endif  // TOOLOPS_CLI_DOCTOR_H_
