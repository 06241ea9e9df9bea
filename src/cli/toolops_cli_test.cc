// src/cli/toolops_cli_test.cc
//
// The built `toolops` binary, run as a user would: help for every command,
// --version, and the exit codes scripts rely on.

#include <sys/wait.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "processes.h"

namespace {

struct Outcome {
  int code = -1;
  std::string out;
};

// Runs the binary with `args` (a shell fragment), stdin from /dev/null,
// stderr into the output.
Outcome Toolops(const std::string& args, const std::string& env = "") {
  std::string command = env + " NO_COLOR=1 " + TOOLOPS_CLI_BINARY + " " + args + " </dev/null 2>&1";
  Outcome r;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return r;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), p)) > 0) r.out.append(buffer, n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(ToolopsCliTest, EveryCommandHasHelpAndExitCodes) {
  for (const char* command : {"doctor", "stats", "clear", "invalidate", "inspect", "calibrate"}) {
    Outcome help = Toolops(std::string("help ") + command);
    EXPECT_EQ(help.code, 0) << command;
    EXPECT_NE(help.out.find(std::string("usage: toolops ") + command), std::string::npos)
        << help.out;
    Outcome dash_h = Toolops(std::string(command) + " -h");
    EXPECT_EQ(dash_h.code, 0) << command;
    EXPECT_EQ(dash_h.out, help.out) << command;
    if (std::string(command) != "calibrate") {
      EXPECT_NE(help.out.find("exit status"), std::string::npos) << command;
    }
    Outcome bad = Toolops(std::string(command) + " --no-such-option");
    EXPECT_EQ(bad.code, 2) << command << ": " << bad.out;
  }
  Outcome version = Toolops("--version");
  EXPECT_EQ(version.code, 0);
  EXPECT_EQ(version.out.rfind("toolops ", 0), 0u);
  EXPECT_EQ(Toolops("frobnicate").code, 2);
  EXPECT_EQ(Toolops("help frobnicate").code, 2);
}

TEST(ToolopsCliTest, DoctorExitsOneOnABadFileAndNamesTheLine) {
  toolops::testing::TempDir dir("toolops-cli-bin");
  std::string path = dir.File("toolops.toml");
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("[tools.web_search]\nretry.max_attempts = -1\n", f);
  std::fclose(f);
  Outcome r = Toolops("doctor --config " + path);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find(path + ":2: tools.web_search.retry.max_attempts is -1"), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("\x1b["), std::string::npos);  // NO_COLOR, and not a terminal.

  Outcome json = Toolops("doctor --json --config " + path);
  EXPECT_EQ(json.code, 1);
  EXPECT_NE(json.out.find("\"healthy\": false"), std::string::npos) << json.out;

  // The environment overrides the file: the same file becomes valid.
  Outcome fixed = Toolops("doctor --json --config " + path,
                          "TOOLOPS__TOOLS__WEB_SEARCH__RETRY__MAX_ATTEMPTS=3");
  EXPECT_NE(fixed.out.find("\"name\": \"config\",\n      \"status\": \"ok\""), std::string::npos)
      << fixed.out;
  EXPECT_EQ(Toolops("doctor --timeout 0 --config " + path).code, 2);
}

TEST(ToolopsCliTest, ClearWithoutATerminalNeedsYes) {
  toolops::testing::TempDir dir("toolops-cli-bin");
  std::string path = dir.File("toolops.toml");
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fprintf(f, "[stores.local]\ntype = \"sqlite\"\npath = \"%s\"\n", dir.File("c.db").c_str());
  std::fclose(f);
  Outcome r = Toolops("clear --config " + path);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("pass --yes"), std::string::npos) << r.out;
  Outcome yes = Toolops("clear --yes --config " + path);
  EXPECT_EQ(yes.code, 0) << yes.out;
  EXPECT_NE(yes.out.find("local: removed 0 entries"), std::string::npos) << yes.out;
}

TEST(ToolopsCliTest, StatsWithNoEndpointIsBadUsage) {
  toolops::testing::TempDir dir("toolops-cli-bin");
  Outcome r = Toolops("stats --config " + dir.File("none.toml"));
  EXPECT_EQ(r.code, 2) << r.out;
  Outcome down = Toolops("stats --endpoint http://127.0.0.1:1/metrics");
  EXPECT_EQ(down.code, 1) << down.out;
}

TEST(ToolopsCliTest, ReplayWithWorkersAndBadStoresSaysWhatIsWrong) {
  toolops::testing::TempDir dir("toolops-cli-replay");
  const std::string trace = dir.File("trace.jsonl");
  {
    std::ofstream out(trace);
    for (int i = 0; i < 6; ++i) {
      out << R"({"ts":"2025-06-02T09:00:0)" << i << R"(.000Z","conversation":"c","agent":"a)"
          << i % 2 << R"(","tool":"search","args":{"query":"q"},"latency_ms":1500,"intent":"q"})"
          << "\n";
    }
  }
  // Two workers without a shared store: each pays once for the question.
  Outcome two = Toolops("replay " + trace + " --policy exact --workers 2 --no-progress");
  EXPECT_EQ(two.code, 0) << two.out;
  EXPECT_NE(two.out.find("2 (no shared store)"), std::string::npos) << two.out;
  EXPECT_NE(two.out.find(" 2 (33.3%)\n"), std::string::npos) << two.out;
  // The default output has no rows for what it does not use.
  Outcome plain = Toolops("replay " + trace + " --policy exact --no-progress");
  EXPECT_EQ(plain.code, 0) << plain.out;
  EXPECT_EQ(plain.out.find("workers"), std::string::npos) << plain.out;
  EXPECT_EQ(plain.out.find("timeouts"), std::string::npos) << plain.out;

  Outcome scheme = Toolops("replay " + trace + " --store memcached://host");
  EXPECT_EQ(scheme.code, 2);
  EXPECT_NE(scheme.out.find("is not a redis://, rediss://, postgres:// or postgresql:// URL"),
            std::string::npos)
      << scheme.out;
  Outcome workers = Toolops("replay " + trace + " --workers 0");
  EXPECT_EQ(workers.code, 2);
  EXPECT_NE(workers.out.find("--workers needs a whole number from 1 to 1024"), std::string::npos)
      << workers.out;
  const std::string config = dir.File("toolops.toml");
  {
    std::ofstream out(config);
    out << "[stores.local]\ntype = \"memory\"\n";
  }
  Outcome missing = Toolops("replay " + trace + " --config " + config + " --store shared");
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.out.find("has no such store (it has: local)"), std::string::npos)
      << missing.out;
  Outcome memory = Toolops("replay " + trace + " --config " + config + " --store local");
  EXPECT_EQ(memory.code, 2);
  EXPECT_NE(memory.out.find("the replay shares a redis or postgres store only"), std::string::npos)
      << memory.out;
  // A server that does not answer fails the replay (exit 1), password hidden.
  Outcome down = Toolops("replay " + trace + " --store redis://u:secret@127.0.0.1:1");
  EXPECT_EQ(down.code, 1);
  EXPECT_NE(down.out.find("redis://u:***@127.0.0.1:1"), std::string::npos) << down.out;
  EXPECT_EQ(down.out.find("secret"), std::string::npos) << down.out;
}

TEST(ToolopsCliTest, StatsFromAStoreThatCannotHoldThemIsBadUsage) {
  toolops::testing::TempDir dir("toolops-cli-bin");
  std::string config = dir.File("toolops.toml");
  FILE* f = std::fopen(config.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("[stores.local]\ntype = \"memory\"\n", f);
  std::fclose(f);
  Outcome memory = Toolops("stats --config " + config + " --store local");
  EXPECT_EQ(memory.code, 2) << memory.out;
  EXPECT_NE(memory.out.find("is of type memory"), std::string::npos) << memory.out;
  Outcome unknown = Toolops("stats --config " + config + " --store shared");
  EXPECT_EQ(unknown.code, 2) << unknown.out;
  EXPECT_NE(unknown.out.find("configured: local"), std::string::npos) << unknown.out;
  // A sqlite: URL must name an existing file; reading never creates one.
  Outcome no_file = Toolops("stats --store sqlite:" + dir.File("absent.db"));
  EXPECT_EQ(no_file.code, 2) << no_file.out;
  EXPECT_NE(no_file.out.find("no SQLite file at '" + dir.File("absent.db") + "'"),
            std::string::npos)
      << no_file.out;
  EXPECT_FALSE(std::filesystem::exists(dir.File("absent.db")));
  Outcome both = Toolops("stats --endpoint http://127.0.0.1:1 --store redis://127.0.0.1:1");
  EXPECT_EQ(both.code, 2) << both.out;
  // A store that does not answer: a failure, not a usage error, without
  // the URL (it may hold a password) in the message.
  Outcome down = Toolops("stats --store redis://:s3cret@127.0.0.1:1/0");
  EXPECT_EQ(down.code, 1) << down.out;
  EXPECT_EQ(down.out.find("s3cret"), std::string::npos) << down.out;
}

}  // namespace
