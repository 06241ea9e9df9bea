// src/cli/doctor_test.cc
//
// toolops doctor against real stores: a redis-server of its own, a SQLite
// file, and a socket that accepts connections but never answers (a server
// that hangs).

#include "cli/doctor.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include "processes.h"
#include "redis_server.h"

namespace toolops::cli {
namespace {

const CheckResult* Find(const DoctorReport& report, std::string_view name) {
  for (const CheckResult& c : report.checks) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string Describe(const DoctorReport& report) { return FormatDoctorTable(report, false); }

std::string HealthyConfig(const std::string& dir, int redis_port) {
  return "[stores.memory]\ntype = \"memory\"\n"
         "[stores.local]\ntype = \"sqlite\"\npath = \"" +
         dir + "/cache.db\"\n" + "[stores.shared]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:" +
         std::to_string(redis_port) +
         "/0\"\n"
         "[tools.web_search]\ncache.shared_store = \"shared\"\ncache.semantic.params = "
         "[\"query\"]\n";
}

TEST(DoctorTest, HealthySetUpPassesEveryCheck) {
  testing::RedisServer server;
  ASSERT_TRUE(server.ok()) << server.error();
  testing::TempDir dir("toolops-doctor");
  Result<Config> config = ParseConfig(HealthyConfig(dir.path(), server.port()), "toolops.toml");
  ASSERT_TRUE(config.ok()) << config.status().message();

  DoctorReport report = RunDoctor(config, DoctorOptions{});
  EXPECT_TRUE(report.healthy()) << Describe(report);
  EXPECT_FALSE(report.abandoned);
  for (const char* name : {"config", "store memory (memory)", "store local (sqlite)",
                           "store shared (redis)", "clock vs shared", "embedder", "clock"}) {
    const CheckResult* c = Find(report, name);
    ASSERT_NE(c, nullptr) << name << "\n" << Describe(report);
    EXPECT_EQ(c->state, CheckState::kOk) << name << "\n" << Describe(report);
  }
  EXPECT_NE(Find(report, "store shared (redis)")->detail.find("put/get/delete"), std::string::npos);
  // The probe leaves nothing behind.
  EXPECT_EQ(Find(report, "otlp endpoint")->state, CheckState::kSkipped);
}

TEST(DoctorTest, StoppedRedisIsBrokenAndNamesTheFix) {
  testing::RedisServer server;
  ASSERT_TRUE(server.ok()) << server.error();
  const int port = server.port();
  server.Stop();
  testing::TempDir dir("toolops-doctor");
  Result<Config> config = ParseConfig(HealthyConfig(dir.path(), port), "toolops.toml");
  ASSERT_TRUE(config.ok());

  DoctorReport report = RunDoctor(config, DoctorOptions{});
  EXPECT_FALSE(report.healthy());
  // The store's own connect timeout ended the check, not the doctor's limit.
  EXPECT_FALSE(report.abandoned);
  const CheckResult* redis = Find(report, "store shared (redis)");
  ASSERT_NE(redis, nullptr) << Describe(report);
  EXPECT_EQ(redis->state, CheckState::kBroken);
  EXPECT_NE(redis->detail.find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << redis->detail;
  EXPECT_NE(redis->fix.find("stores.shared.url"), std::string::npos) << redis->fix;
  EXPECT_NE(redis->fix.find("toolops.toml:6"), std::string::npos) << redis->fix;
  // The other stores are still checked and healthy.
  EXPECT_EQ(Find(report, "store local (sqlite)")->state, CheckState::kOk);
  std::string table = Describe(report);
  EXPECT_NE(table.find("what to do:"), std::string::npos);
  EXPECT_NE(table.find("broken"), std::string::npos);
}

// Accepts TCP connections (the kernel completes them) and never answers.
class SilentServer {
 public:
  SilentServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 64);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentServer() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(DoctorTest, ServerThatNeverAnswersIsBrokenWithinItsConfiguredTimeouts) {
  SilentServer silent;
  Result<Config> config =
      ParseConfig("[stores.hung]\ntype = \"redis\"\nport = " + std::to_string(silent.port()) +
                      "\nconnect_timeout = \"200ms\"\nio_timeout = \"200ms\"\n",
                  "toolops.toml");
  ASSERT_TRUE(config.ok()) << config.status().message();
  DoctorReport report = RunDoctor(config, DoctorOptions{});
  EXPECT_FALSE(report.healthy());
  EXPECT_FALSE(report.abandoned) << Describe(report);
  const CheckResult* hung = Find(report, "store hung (redis)");
  ASSERT_NE(hung, nullptr) << Describe(report);
  EXPECT_EQ(hung->state, CheckState::kBroken);
  EXPECT_EQ(hung->detail.find("did not finish"), std::string::npos) << hung->detail;
}

TEST(DoctorTest, BadConfigurationIsOneBrokenCheckWithItsMessage) {
  Result<Config> config = ParseConfig("[tools.t]\nretry.max_attempts = -1\n", "toolops.toml");
  ASSERT_FALSE(config.ok());
  DoctorReport report = RunDoctor(config, DoctorOptions{});
  EXPECT_FALSE(report.healthy());
  ASSERT_FALSE(report.checks.empty());
  EXPECT_EQ(report.checks[0].name, "config");
  EXPECT_EQ(report.checks[0].state, CheckState::kBroken);
  EXPECT_NE(report.checks[0].detail.find("toolops.toml:2: tools.t.retry.max_attempts is -1"),
            std::string::npos);
  std::string json = FormatDoctorJson(report);
  EXPECT_NE(json.find("\"healthy\": false"), std::string::npos) << json;
}

TEST(DoctorTest, ToolNamingAnUnconfiguredStoreIsBroken) {
  Result<Config> config = ParseConfig(
      "[stores.shared]\ntype = \"memory\"\n[tools.t]\ncache.shared_store = \"sharde\"\n",
      "toolops.toml");
  ASSERT_TRUE(config.ok()) << config.status().message();
  DoctorReport report = RunDoctor(config, DoctorOptions{});
  const CheckResult* tool = Find(report, "tool t");
  ASSERT_NE(tool, nullptr) << Describe(report);
  EXPECT_EQ(tool->state, CheckState::kBroken);
  EXPECT_NE(tool->detail.find("'sharde'"), std::string::npos);
  EXPECT_NE(tool->fix.find("memory, shared"), std::string::npos) << tool->fix;
}

TEST(DoctorTest, UnreachableOtlpEndpointAndBusyMetricsPortAreReported) {
  const int dead_port = testing::PickFreePort();
  SilentServer busy;  // Holds a port, as a running agent's metrics endpoint would.
  Result<Config> config =
      ParseConfig("[telemetry]\notlp_endpoint = \"http://127.0.0.1:" + std::to_string(dead_port) +
                      "\"\nmetrics_port = " + std::to_string(busy.port()) + "\n",
                  "toolops.toml");
  ASSERT_TRUE(config.ok()) << config.status().message();
  DoctorReport report = RunDoctor(config, DoctorOptions{});
  EXPECT_EQ(Find(report, "otlp endpoint")->state, CheckState::kBroken) << Describe(report);
  EXPECT_EQ(Find(report, "metrics port")->state, CheckState::kWarning) << Describe(report);
}

}  // namespace
}  // namespace toolops::cli
