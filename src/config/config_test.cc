// src/config/config_test.cc

#include "toolops/config.h"

#include <gtest/gtest.h>

#include <string>

#include "toolops/tool.h"

namespace toolops {
namespace {

constexpr char kGood[] = R"(# a complete file
[stores.local]
type = "sqlite"
path = "/tmp/toolops-config-test.db"
busy_timeout = "2s"

[stores.shared]
type = "valkey"
url = "redis://cache.internal:6380/2"
io_timeout = "250ms"
connect_timeout = 0.5
namespace = "agents"
tls.enabled = true
tls.ca_file = "/etc/ssl/ca.pem"

[stores.pg]
type = "postgres"
url = "postgresql://toolops@db/cache"
table = "entries"

[stores.memory]
type = "memory"
max_entries = 5000
eviction = "lru"

[tools.web_search]
version = "2"
tags = ["web", "search"]
cost_per_call = 0.005
sensitive_params = ["api_key"]
cache.ttl = "10m"
cache.stale_if_error = "1h"
cache.shared_store = "shared"
cache.normalization = "nfkc_casefold"
cache.semantic.params = ["query"]
cache.semantic.threshold = 0.92
retry.max_attempts = 3
retry.initial_backoff = "200ms"
retry.retry_on = ["UNAVAILABLE", "DEADLINE_EXCEEDED"]
breaker.window = "time"
breaker.window_duration = "30s"
limit.max_concurrent = 8
timeout.deadline = "5s"

[tools."myapp.lookup"]
coalesce.enabled = false

[telemetry]
metrics_port = 9464
otlp_endpoint = "http://127.0.0.1:4318"
sampling_ratio = 0.01
log_level = "debug"
)";

TEST(ConfigTest, ReadsEverySection) {
  Result<Config> c = ParseConfig(kGood, "toolops.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  ASSERT_EQ(c->stores.size(), 4u);
  const StoreConfig& local = c->stores.at("local");
  EXPECT_EQ(local.type, StoreType::kSqlite);
  EXPECT_EQ(local.sqlite.path, "/tmp/toolops-config-test.db");
  EXPECT_EQ(local.sqlite.busy_timeout, std::chrono::seconds(2));
  EXPECT_EQ(local.sqlite.name, "local");
  EXPECT_EQ(local.where, "toolops.toml:2");
  const StoreConfig& shared = c->stores.at("shared");
  EXPECT_EQ(shared.type, StoreType::kRedis);
  EXPECT_EQ(shared.type_name, "valkey");
  EXPECT_EQ(shared.redis.url, "redis://cache.internal:6380/2");
  EXPECT_EQ(shared.redis.io_timeout, std::chrono::milliseconds(250));
  EXPECT_EQ(shared.redis.connect_timeout, std::chrono::milliseconds(500));
  EXPECT_EQ(shared.key_namespace(), "agents");
  EXPECT_TRUE(shared.redis.tls.enabled);
  EXPECT_EQ(shared.redis.tls.ca_file, "/etc/ssl/ca.pem");
  EXPECT_TRUE(shared.shared());
  EXPECT_EQ(c->stores.at("pg").postgres.conninfo, "postgresql://toolops@db/cache");
  EXPECT_EQ(c->stores.at("pg").postgres.table, "entries");
  EXPECT_EQ(c->stores.at("memory").memory.max_entries, 5000u);
  EXPECT_EQ(c->stores.at("memory").memory.eviction, EvictionPolicy::kLru);
  EXPECT_FALSE(c->stores.at("memory").shared());

  const ToolConfig* search = c->FindTool("web_search");
  ASSERT_NE(search, nullptr);
  EXPECT_EQ(search->version, "2");
  EXPECT_EQ(search->tags, (std::vector<std::string>{"web", "search"}));
  ToolPolicy p;
  search->ApplyTo(&p);
  EXPECT_DOUBLE_EQ(p.cost_per_call, 0.005);
  EXPECT_EQ(p.cache.ttl, std::chrono::minutes(10));
  EXPECT_EQ(p.cache.stale_if_error, std::chrono::hours(1));
  EXPECT_EQ(p.cache.shared_store, "shared");
  EXPECT_EQ(p.cache.normalization, TextNormalization::kNfkcCasefold);
  EXPECT_EQ(p.cache.semantic.params, std::vector<std::string>{"query"});
  EXPECT_DOUBLE_EQ(p.cache.semantic.threshold, 0.92);
  EXPECT_EQ(p.retry.max_attempts, 3);
  EXPECT_EQ(p.retry.initial_backoff, std::chrono::milliseconds(200));
  EXPECT_EQ(p.retry.retry_on,
            (std::vector<StatusCode>{StatusCode::kUnavailable, StatusCode::kDeadlineExceeded}));
  EXPECT_EQ(p.breaker.window, BreakerWindow::kTimeBased);
  EXPECT_EQ(p.breaker.window_duration, std::chrono::seconds(30));
  EXPECT_EQ(p.limit.max_concurrent, 8);
  EXPECT_EQ(p.timeout.deadline, std::chrono::seconds(5));
  // Fields the file does not set keep the code's values.
  EXPECT_EQ(p.breaker.open_wait, std::chrono::seconds(30));
  EXPECT_EQ(p.sensitive_params, std::vector<std::string>{"api_key"});

  ASSERT_NE(c->FindTool("myapp.lookup"), nullptr);
  EXPECT_EQ(c->telemetry.metrics_port, 9464);
  EXPECT_EQ(c->telemetry.otlp_endpoint, "http://127.0.0.1:4318");
  EXPECT_DOUBLE_EQ(c->telemetry.sampling_ratio, 0.01);
  EXPECT_EQ(c->telemetry.log_level, "debug");
  EXPECT_EQ(c->telemetry.log_format, "json");
}

TEST(ConfigTest, EmptyTextIsAnEmptyConfig) {
  Result<Config> c = ParseConfig("", "toolops.toml");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->stores.empty());
  EXPECT_TRUE(c->tools.empty());
}

TEST(ConfigTest, DurationsTakeUnitsOrSeconds) {
  EXPECT_EQ(*ParseDurationText("250ms"), std::chrono::milliseconds(250));
  EXPECT_EQ(*ParseDurationText("5s"), std::chrono::seconds(5));
  EXPECT_EQ(*ParseDurationText("1.5s"), std::chrono::milliseconds(1500));
  EXPECT_EQ(*ParseDurationText("1m"), std::chrono::minutes(1));
  EXPECT_EQ(*ParseDurationText("2h"), std::chrono::hours(2));
  EXPECT_EQ(*ParseDurationText("1d"), std::chrono::hours(24));
  EXPECT_EQ(*ParseDurationText("100us"), std::chrono::microseconds(100));
  for (const char* bad : {"", "5", "s", "5 s", "5sec", "-1s", "1m30s", "1e3s"}) {
    EXPECT_FALSE(ParseDurationText(bad).ok()) << bad;
  }
}

// Each bad file, and the one line of the message it must give.
struct BadCase {
  const char* text;
  const char* message;
};

TEST(ConfigTest, EveryKindOfErrorNamesFileLineFieldAndExpectation) {
  const BadCase cases[] = {
      {"[tools.web_search]\nretry.max_attempts = -1\n",
       "toolops.toml:2: tools.web_search.retry.max_attempts is -1; it must be between 1 (no "
       "retries) and 100"},
      {"[tools.web_search]\n\nretry.max_attempts = \"3\"\n",
       "toolops.toml:3: tools.web_search.retry.max_attempts: expected an integer, got \"3\""},
      {"[tools.web_search]\ncache.tll = \"5s\"\n",
       "toolops.toml:2: tools.web_search.cache.tll: unknown key (did you mean 'ttl'?); known keys "
       "here: enabled, ttl, stale_while_revalidate, stale_if_error, key_params, normalization, "
       "store, shared_store, max_value_bytes, semantic"},
      {"[tools.t]\ncache.ttl = \"5 minutes\"\n",
       "toolops.toml:2: tools.t.cache.ttl: expected a duration (a number of seconds, or a string "
       "such as \"250ms\", \"5s\", \"1m\"), got \"5 minutes\""},
      {"[tools.t]\ncache.ttl = 0\n",
       "toolops.toml:2: tools.t.cache.ttl is 0ms; it must be positive (disable the cache with "
       "cache.enabled = false)"},
      {"[tools.t]\ncache.normalization = \"NFC\"\n",
       "toolops.toml:2: tools.t.cache.normalization: expected one of \"none\", \"nfc\", "
       "\"nfkc\", \"nfkc_casefold\", got \"NFC\""},
      {"[tools.t]\nretry.retry_on = [\"UNAVAILBLE\"]\n",
       nullptr},  // Checked below: names the code and suggests UNAVAILABLE.
      {"[tools.t]\ncache.semantic.threshold = 1.5\ncache.semantic.params = [\"q\"]\n",
       "toolops.toml:2: tools.t.cache.semantic.threshold is 1.500000; it must be in (0, 1]"},
      {"[tools.t]\nsensitive_params = \"key\"\n",
       "toolops.toml:2: tools.t.sensitive_params: expected a list of strings, got \"key\""},
      {"[stores.r]\ntype = \"redis\"\nport = 70000\n",
       "toolops.toml:3: stores.r.port: expected an integer from 1 to 65535, got 70000"},
      {"[stores.r]\ntype = \"mongo\"\n",
       "toolops.toml:2: stores.r.type: expected one of \"memory\", \"sqlite\", \"redis\", "
       "\"valkey\", \"postgres\", got \"mongo\""},
      {"[stores.r]\nurl = \"redis://x\"\n",
       "toolops.toml:1: stores.r: missing key 'type'; expected one of \"memory\", \"sqlite\", "
       "\"redis\", \"valkey\", \"postgres\""},
      {"[stores.f]\ntype = \"sqlite\"\n",
       "toolops.toml:1: stores.f: missing key 'path': the "
       "SQLite database file"},
      {"[stores.r]\ntype = \"redis\"\nio_timout = \"1s\"\n",
       nullptr},  // Checked below: suggests io_timeout.
      {"[telemetry]\nsampling_ratio = 2\n",
       "toolops.toml:2: telemetry.sampling_ratio: expected a number from 0 to 1, got 2.000000"},
      {"[telemetry]\nlog_level = \"loud\"\n",
       "toolops.toml:2: telemetry.log_level: expected one of \"debug\", \"info\", \"warning\", "
       "\"error\", got \"loud\""},
      {"[tool.x]\n",
       "toolops.toml:1: tool: unknown section (did you mean 'tools'?); known "
       "sections: stores, tools, telemetry"},
      {"[tools.t]\nretry.max_attempts = 3\nretry.max_attempts = 4\n", nullptr},  // TOML error.
  };
  for (const BadCase& c : cases) {
    Result<Config> config = ParseConfig(c.text, "toolops.toml");
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
    if (c.message != nullptr) EXPECT_EQ(config.status().message(), c.message) << c.text;
  }
  Result<Config> codes = ParseConfig("[tools.t]\nretry.retry_on = [\"UNAVAILBLE\"]\n", "f.toml");
  EXPECT_NE(codes.status().message().find("f.toml:2: tools.t.retry.retry_on: unknown status code "
                                          "'UNAVAILBLE' (did you mean 'UNAVAILABLE'?)"),
            std::string::npos)
      << codes.status().message();
  Result<Config> typo = ParseConfig("[stores.r]\ntype = \"redis\"\nio_timout = \"1s\"\n", "f.toml");
  EXPECT_NE(typo.status().message().find("f.toml:3: stores.r.io_timout: unknown key (did you mean "
                                         "'io_timeout'?)"),
            std::string::npos)
      << typo.status().message();
  Result<Config> twice =
      ParseConfig("[tools.t]\nretry.max_attempts = 3\nretry.max_attempts = 4\n", "f.toml");
  EXPECT_EQ(twice.status().message().rfind("f.toml:3: not valid TOML: ", 0), 0u)
      << twice.status().message();
}

TEST(ConfigTest, ReportsEveryProblemNotOnlyTheFirst) {
  Result<Config> c = ParseConfig(
      "[tools.a]\ncache.ttl = \"x\"\n[tools.b]\nretry.max_attempts = 0\n[stores.s]\ntype = 1\n",
      "toolops.toml");
  ASSERT_FALSE(c.ok());
  std::string message(c.status().message());
  EXPECT_NE(message.find("toolops.toml:2: tools.a.cache.ttl"), std::string::npos) << message;
  EXPECT_NE(message.find("toolops.toml:4: tools.b.retry.max_attempts is 0"), std::string::npos);
  EXPECT_NE(message.find("toolops.toml:6: stores.s.type"), std::string::npos);
}

TEST(ConfigTest, EnvironmentOverridesSingleFields) {
  ConfigEnv env = {
      {"TOOLOPS__TOOLS__WEB_SEARCH__CACHE__TTL", "60s"},
      {"TOOLOPS__TOOLS__WEB_SEARCH__RETRY__MAX_ATTEMPTS", "5"},
      {"TOOLOPS__TOOLS__MYAPP_LOOKUP__COALESCE__ENABLED", "true"},
      {"TOOLOPS__TOOLS__NEW_TOOL__COST_PER_CALL", "0.25"},
      {"TOOLOPS__STORES__SHARED__PASSWORD", "12345"},
      {"TOOLOPS__STORES__SHARED__TLS__VERIFY_PEER", "false"},
      {"toolops__telemetry__log_format", "text"},
      {"TOOLOPS__TOOLS__WEB_SEARCH__SENSITIVE_PARAMS", "api_key, token"},
      {"TOOLOPS_CONFIG", "ignored.toml"},
      {"HOME", "/root"},
  };
  Result<Config> c = ParseConfig(kGood, "toolops.toml", env);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->environment.size(), 8u);
  ToolPolicy p;
  c->FindTool("web_search")->ApplyTo(&p);
  EXPECT_EQ(p.cache.ttl, std::chrono::seconds(60));          // Over the file's 10m.
  EXPECT_EQ(p.retry.max_attempts, 5);                        // Over the file's 3.
  EXPECT_EQ(p.cache.stale_if_error, std::chrono::hours(1));  // The file's, untouched.
  EXPECT_EQ(p.sensitive_params, (std::vector<std::string>{"api_key", "token"}));
  // "myapp.lookup" is reached as MYAPP_LOOKUP.
  ToolPolicy lookup;
  lookup.coalesce.enabled = false;
  c->FindTool("myapp.lookup")->ApplyTo(&lookup);
  EXPECT_TRUE(lookup.coalesce.enabled);
  ToolPolicy fresh;
  ASSERT_NE(c->FindTool("new_tool"), nullptr);
  c->FindTool("new_tool")->ApplyTo(&fresh);
  EXPECT_DOUBLE_EQ(fresh.cost_per_call, 0.25);
  EXPECT_EQ(c->stores.at("shared").redis.password,
            "12345");  // Text, though it looks like a number.
  EXPECT_FALSE(c->stores.at("shared").redis.tls.verify_peer);
  EXPECT_EQ(c->telemetry.log_format, "text");
}

TEST(ConfigTest, BadEnvironmentValuesNameTheVariable) {
  Result<Config> c = ParseConfig("[tools.t]\n", "toolops.toml",
                                 {{"TOOLOPS__TOOLS__T__RETRY__MAX_ATTEMPTS", "many"}});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "environment variable TOOLOPS__TOOLS__T__RETRY__MAX_ATTEMPTS: "
            "tools.t.retry.max_attempts: expected an integer, got \"many\"");
  Result<Config> range =
      ParseConfig("", "toolops.toml", {{"TOOLOPS__TOOLS__T__RETRY__MAX_ATTEMPTS", "101"}});
  EXPECT_EQ(range.status().message(),
            "environment variable TOOLOPS__TOOLS__T__RETRY__MAX_ATTEMPTS: "
            "tools.t.retry.max_attempts is 101; it must be between 1 (no retries) and 100");
  Result<Config> section = ParseConfig("", "toolops.toml", {{"TOOLOPS__TOOL__T__X", "1"}});
  EXPECT_EQ(section.status().message(),
            "environment variable TOOLOPS__TOOL__T__X: unknown section 'tool'; expected STORES, "
            "TOOLS or TELEMETRY (did you mean 'tools'?)");
  Result<Config> unknown =
      ParseConfig("", "toolops.toml", {{"TOOLOPS__TOOLS__T__CACHE__TLL", "1s"}});
  EXPECT_NE(unknown.status().message().find("environment variable TOOLOPS__TOOLS__T__CACHE__TLL: "
                                            "tools.t.cache.tll: unknown key (did you mean 'ttl'?)"),
            std::string::npos)
      << unknown.status().message();
}

TEST(ConfigTest, AppliedConfigWinsOverTheCodeWhenWrapping) {
  Result<Config> c = ParseConfig(
      "[stores.extra]\ntype = \"memory\"\n"
      "[tools.configured]\ncache.ttl = \"42s\"\ncache.store = \"extra\"\nretry.max_attempts = 2\n",
      "toolops.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  StoreRegistry registry;
  ASSERT_TRUE(ApplyConfig(*c, &registry).ok());
  ASSERT_TRUE(registry.Get("extra").ok());
  Environment env;
  env.stores = &registry;
  ToolPolicy code;
  code.cache.ttl = std::chrono::seconds(5);
  code.retry.max_attempts = 4;
  code.cost_per_call = 1.5;
  auto configured = Readonly(
      {"configured", "1", {"q"}}, code, [](std::string q) { return q; }, env);
  EXPECT_EQ(configured.core().policy().cache.ttl, std::chrono::seconds(42));
  EXPECT_EQ(configured.core().policy().cache.store, "extra");
  EXPECT_EQ(configured.core().policy().retry.max_attempts, 2);
  EXPECT_DOUBLE_EQ(configured.core().policy().cost_per_call, 1.5);  // The code's: not in the file.
  // A tool the file does not name keeps the code's policy.
  code.cache.store = "memory";
  registry.Register("memory", std::shared_ptr<Store>(NewMemoryStore({}).value()));
  auto other = Readonly(
      {"other", "1", {"q"}}, code, [](std::string q) { return q; }, env);
  EXPECT_EQ(other.core().policy().cache.ttl, std::chrono::seconds(5));
  ResetAppliedConfig();
}

TEST(ConfigTest, WrapErrorsCausedByTheFileSayWhereTheFieldWasSet) {
  Result<Config> c = ParseConfig("[tools.pay]\nretry.max_attempts = 3\n", "toolops.toml");
  ASSERT_TRUE(c.ok());
  StoreRegistry registry;
  ASSERT_TRUE(ApplyConfig(*c, &registry).ok());
  Environment env;
  env.stores = &registry;
  auto made = MakeTool(
      {"pay", "1", {"amount"}}, internal::AsSideEffect(ToolPolicy{}),
      [](int amount) { return amount; }, env);
  ASSERT_FALSE(made.ok());
  EXPECT_NE(made.status().message().find("(retry.max_attempts set by toolops.toml:2)"),
            std::string::npos)
      << made.status().message();
  ResetAppliedConfig();
}

TEST(ConfigTest, ApplyFailsOnAStoreThatCannotOpenAndChangesNothing) {
  Result<Config> c = ParseConfig(
      "[stores.ok]\ntype = \"memory\"\n[stores.bad]\ntype = \"sqlite\"\npath = "
      "\"/nonexistent-dir/x/cache.db\"\n[tools.t]\ncache.ttl = 5\n",
      "toolops.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  StoreRegistry registry;
  Status s = ApplyConfig(*c, &registry);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(std::string(s.message()).rfind("store 'bad' (toolops.toml:3): ", 0), 0u) << s.message();
  EXPECT_TRUE(registry.Names().empty());
  EXPECT_EQ(AppliedConfig(), nullptr);
}

TEST(ConfigTest, LoadConfigReadsTheNamedFileAndRefusesAMissingOne) {
  Result<Config> missing = LoadConfig("/nonexistent/toolops.toml");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/toolops.toml: cannot read"),
            std::string::npos);
  std::string path = ::testing::TempDir() + "/config_test_toolops.toml";
  {
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("[tools.t]\ncache.ttl = \"3s\"\n", f);
    std::fclose(f);
  }
  Result<Config> c = LoadConfig(path);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->path, path);
  EXPECT_EQ(c->FindTool("t")->overrides.at(0).where, path + ":2");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace toolops
