// src/cli/toolops_main.cc
//
// The `toolops` command. Exit codes: 0 done, 1 the check or target failed,
// 2 bad usage or unreadable input.

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cli/cache_cmds.h"
#include "cli/calibrate.h"
#include "cli/doctor.h"
#include "cli/replay_cli.h"
#include "cli/stats_cmd.h"
#include "semantic/pairs.h"
#include "toolops/embedder.h"

namespace toolops {
namespace {

constexpr char kUsage[] =
    "usage: toolops <command> [options]\n"
    "\n"
    "commands:\n"
    "  calibrate PAIRS   sweep the semantic cache's threshold on labelled pairs and\n"
    "                    print the precision/recall curve and the threshold to use\n"
    "  replay TRACE      replay a trace of tool calls through the middleware and\n"
    "                    report what it saves (--generate N: the bundled sample)\n"
    "  sample-trace      write the bundled sample trace (JSON Lines)\n"
    "  doctor            check the configuration, the stores, the embedder, the clock\n"
    "                    and the telemetry endpoints; say what to fix\n"
    "  stats             calls, hits, upstream calls, money saved and breaker states\n"
    "                    of running agents (their metrics endpoints); --watch\n"
    "  clear [STORE]     remove cached entries from a configured store (--tool T)\n"
    "  invalidate        remove the entries of the tools that carry a tag (--tag T)\n"
    "  inspect           what is cached for one call (--tool T --args JSON)\n"
    "  help [COMMAND]    this help, or a command's (also COMMAND -h)\n"
    "\n"
    "options:\n"
    "  --version         print the version and exit\n"
    "\n"
    "configuration: --config FILE, else $TOOLOPS_CONFIG, else ./toolops.toml;\n"
    "TOOLOPS__SECTION__NAME__FIELD variables override single fields.\n"
    "\n"
    "exit status: 0 done or healthy, 1 a check or the target failed, 2 bad usage or\n"
    "unreadable input (each command's help says more).\n";

constexpr char kCalibrateUsage[] =
    "usage: toolops calibrate PAIRS [options]\n"
    "\n"
    "PAIRS is a CSV file question1,question2,is_duplicate (with a header line) or a\n"
    "JSON array of {\"origin\": ..., \"similar\": ...} pairs that mean the same.\n"
    "Runs the cache protocol: every first question is stored with its own answer,\n"
    "then every second question is looked up; a hit is correct only on its own\n"
    "pair's entry when the pair asks the same thing. Prints served-hit precision\n"
    "and recall per threshold, with and without the match guard, and the threshold\n"
    "with the highest recall at the precision asked for.\n"
    "\n"
    "options:\n"
    "  --precision P     served-hit precision to reach (default 0.97)\n"
    "  --from T --to T   the sweep's first and last threshold (default 0.50, 0.99)\n"
    "  --step S          the sweep's step (default 0.01)\n"
    "  --candidates N    candidates examined per lookup (default 4)\n"
    "  --model DIR       embedder model directory (default: the bundled model,\n"
    "                    or $TOOLOPS_MODEL_DIR)\n"
    "  --show-wrong N    list the N most similar wrong hits the guard let through\n"
    "  --json            print one JSON object instead of the table\n"
    "\n"
    "exit status: 0 when a threshold reaches the precision (with the guard),\n"
    "1 when none does, 2 on bad usage or input.\n";

int UsageError(const std::string& message, const char* usage) {
  std::fprintf(stderr, "toolops: %s\n\n%s", message.c_str(), usage);
  return 2;
}

bool ParseNumber(std::string_view text, double* out) {
  std::string s(text);
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size();
}

int Calibrate(const std::vector<std::string>& args) {
  CalibrateOptions options;
  std::string pairs_path;
  std::string model = DefaultModelDirectory();
  bool json = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    // The option's value: the next argument, if there is one.
    auto value = [&]() -> const std::string* { return i + 1 < args.size() ? &args[++i] : nullptr; };
    if (arg == "-h" || arg == "--help") {
      std::fputs(kCalibrateUsage, stdout);
      return 0;
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--precision" || arg == "--from" || arg == "--to" || arg == "--step" ||
               arg == "--candidates" || arg == "--show-wrong") {
      const std::string* v = value();
      double number = 0;
      if (v == nullptr || !ParseNumber(*v, &number)) {
        return UsageError(arg + " needs a number", kCalibrateUsage);
      }
      if (arg == "--precision") options.precision = number;
      if (arg == "--from") options.from = number;
      if (arg == "--to") options.to = number;
      if (arg == "--step") options.step = number;
      if (arg == "--show-wrong") {
        if (number < 0 || number > 1000 || number != static_cast<size_t>(number)) {
          return UsageError("--show-wrong needs a whole number up to 1000", kCalibrateUsage);
        }
        options.show_wrong = static_cast<size_t>(number);
      }
      if (arg == "--candidates") {
        if (number < 1 || number > 64 || number != static_cast<size_t>(number)) {
          return UsageError("--candidates needs a whole number between 1 and 64", kCalibrateUsage);
        }
        options.candidates = static_cast<size_t>(number);
      }
    } else if (arg == "--model") {
      const std::string* v = value();
      if (v == nullptr) return UsageError("--model needs a directory", kCalibrateUsage);
      model = *v;
    } else if (!arg.empty() && arg[0] == '-') {
      return UsageError("unknown option '" + arg + "'", kCalibrateUsage);
    } else if (pairs_path.empty()) {
      pairs_path = arg;
    } else {
      return UsageError("one PAIRS file only (got '" + pairs_path + "' and '" + arg + "')",
                        kCalibrateUsage);
    }
  }
  if (pairs_path.empty()) return UsageError("calibrate needs a PAIRS file", kCalibrateUsage);
  if (Status s = ValidateCalibrateOptions(options); !s.ok()) {
    return UsageError(std::string(s.message()), kCalibrateUsage);
  }
  Result<std::vector<LabelledPair>> pairs = ReadPairs(pairs_path);
  if (!pairs.ok()) {
    std::fprintf(stderr, "toolops: %s\n", std::string(pairs.status().message()).c_str());
    return 2;
  }
  Result<std::unique_ptr<Embedder>> embedder = LoadStaticEmbedder(model);
  if (!embedder.ok()) {
    std::fprintf(stderr, "toolops: %s\n", std::string(embedder.status().message()).c_str());
    return 2;
  }
  Result<Calibration> c = Calibrate(*pairs, **embedder, options);
  if (!c.ok()) {
    std::fprintf(stderr, "toolops: %s\n", std::string(c.status().message()).c_str());
    return 2;
  }
  std::string text =
      json ? FormatCalibrationJson(*c, options) : FormatCalibrationTable(*c, options);
  std::fputs(text.c_str(), stdout);
  return c->guarded_choice ? 0 : 1;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return UsageError("no command given", kUsage);
  const std::string command = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "--version" || command == "version") {
    std::printf("toolops %s\n", TOOLOPS_VERSION);
    return 0;
  }
  if (command == "help" || command == "-h" || command == "--help") {
    const std::string topic = rest.empty() ? "" : rest[0];
    if (topic == "calibrate") {
      std::fputs(kCalibrateUsage, stdout);
    } else if (topic == "replay") {
      std::fputs(kReplayUsage, stdout);
    } else if (topic == "sample-trace") {
      std::fputs(kSampleTraceUsage, stdout);
    } else if (topic == "doctor") {
      std::fputs(cli::kDoctorUsage, stdout);
    } else if (topic == "stats") {
      std::fputs(cli::kStatsUsage, stdout);
    } else if (topic == "clear") {
      std::fputs(cli::kClearUsage, stdout);
    } else if (topic == "invalidate") {
      std::fputs(cli::kInvalidateUsage, stdout);
    } else if (topic == "inspect") {
      std::fputs(cli::kInspectUsage, stdout);
    } else if (!topic.empty()) {
      return UsageError("no command '" + topic + "'", kUsage);
    } else {
      std::fputs(kUsage, stdout);
    }
    return 0;
  }
  if (command == "calibrate") return Calibrate(rest);
  if (command == "replay") return ReplayCommand(rest);
  if (command == "sample-trace") return SampleTraceCommand(rest);
  if (command == "doctor") return cli::DoctorMain(rest);
  if (command == "stats") return cli::StatsMain(rest);
  if (command == "clear") return cli::ClearMain(rest);
  if (command == "invalidate") return cli::InvalidateMain(rest);
  if (command == "inspect") return cli::InspectMain(rest);
  return UsageError("unknown command '" + command + "'", kUsage);
}

}  // namespace
}  // namespace toolops

int main(int argc, char** argv) { return toolops::Main(argc, argv); }
