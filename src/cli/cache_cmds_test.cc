// src/cli/cache_cmds_test.cc
//
// clear, invalidate and inspect on the entries real wrapped tools left in a
// shared SQLite store (the "agent" is this test process; the commands open
// the store anew from a configuration file, as the command does).

#include "cli/cache_cmds.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "processes.h"
#include "redis_server.h"
#include "store/tag_index.h"
#include "toolops/redis_store.h"
#include "toolops/sqlite_store.h"
#include "toolops/tool.h"

namespace toolops::cli {
namespace {

class CacheCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = dir_.File("cache.db");
    config_ = dir_.File("toolops.toml");
    WriteConfig("");
    SqliteStoreOptions o;
    o.path = db_;
    o.name = "local";
    registry_.Register("memory", std::shared_ptr<Store>(NewMemoryStore({}).value()));
    registry_.Register("local", std::shared_ptr<Store>(NewSqliteStore(o).value()));
    env_.stores = &registry_;
  }

  void WriteConfig(const std::string& tools) {
    FILE* f = std::fopen(config_.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::string text = "[stores.local]\ntype = \"sqlite\"\npath = \"" + db_ +
                       "\"\n[stores.memory]\ntype = \"memory\"\n" + tools;
    std::fputs(text.c_str(), f);
    std::fclose(f);
  }

  ToolPolicy Shared() {
    ToolPolicy p;
    p.cache.shared_store = "local";
    return p;
  }

  // Entries of the shared store (each tool call leaves one).
  uint64_t Entries() { return registry_.Get("local").value()->Stats().entries; }

  int Run(int (*command)(const std::vector<std::string>&), std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", config_});
    return command(args);
  }

  testing::TempDir dir_{"toolops-cli"};
  std::string db_, config_;
  StoreRegistry registry_;
  Environment env_;
};

TEST_F(CacheCommandsTest, ClearRemovesOneToolsEntriesOrAll) {
  auto search = Readonly(
      {"search", "1", {"q"}}, Shared(), [](std::string q) { return q; }, env_);
  auto weather = Readonly(
      {"weather", "3", {"city"}}, Shared(), [](std::string c) { return c + " sunny"; }, env_);
  search("a");
  search("b");
  weather("Paris");
  ASSERT_EQ(Entries(), 3u);

  EXPECT_EQ(Run(ClearMain, {"--tool", "search", "--yes"}), 0);
  EXPECT_EQ(Entries(), 1u);
  // The version is part of the tool's identity: version 1 of weather has none.
  EXPECT_EQ(Run(ClearMain, {"local", "--tool", "weather", "--yes"}), 0);
  EXPECT_EQ(Entries(), 1u);
  EXPECT_EQ(Run(ClearMain, {"local", "--tool", "weather", "--tool-version", "3", "--yes"}), 0);
  EXPECT_EQ(Entries(), 0u);

  search("c");
  weather("Rome");
  EXPECT_EQ(Run(ClearMain, {"--yes"}), 0);
  EXPECT_EQ(Entries(), 0u);
}

TEST_F(CacheCommandsTest, ClearRefusesBadUsage) {
  EXPECT_EQ(Run(ClearMain, {"nowhere", "--yes"}), 2);              // Unknown store.
  EXPECT_EQ(Run(ClearMain, {"--tool-version", "2", "--yes"}), 2);  // Version without tool.
  EXPECT_EQ(Run(ClearMain, {"--bogus"}), 2);
  EXPECT_EQ(Run(ClearMain, {"memory", "--yes"}), 1);  // Lives in each process.
}

TEST_F(CacheCommandsTest, InvalidateDropsTheToolsThatCarryTheTag) {
  WriteConfig("[tools.search]\ntags = [\"web\"]\n");
  auto search = Readonly(
      {"search", "1", {"q"}}, Shared(), [](std::string q) { return q; }, env_);
  auto news = Readonly(
      {"news", "1", {"q"}}, Shared(), [](std::string q) { return q; }, env_);
  auto other = Readonly(
      {"other", "1", {"q"}}, Shared(), [](std::string q) { return q; }, env_);
  search("a");
  news("a");
  other("a");
  ASSERT_EQ(Entries(), 3u);
  // "news" carries the tag through the store (as a Python tool with
  // cache_tags does), not through the configuration.
  ASSERT_TRUE(
      RecordToolTags(*registry_.Get("local").value(), news.core().key_prefix(), {"web"}).ok());
  ASSERT_EQ(Entries(), 4u);  // The tag's record.

  EXPECT_EQ(Run(InvalidateMain, {"--tag", "web"}), 0);
  EXPECT_EQ(Entries(), 2u);  // other's entry and the record remain.
  EXPECT_EQ(Run(InvalidateMain, {"--tag", "nosuchtag"}), 1);
  EXPECT_EQ(Run(InvalidateMain, {}), 2);
}

TEST_F(CacheCommandsTest, InspectFindsTheEntryOfACallAndNothingElse) {
  WriteConfig("[tools.lookup]\nsensitive_params = [\"api_key\"]\n");
  ToolPolicy policy = Shared();
  policy.sensitive_params = {"api_key"};
  auto lookup = Readonly(
      {"lookup", "1", {"city", "days", "api_key"}}, policy,
      [](std::string c, int d, std::string) { return c + std::to_string(d); }, env_);
  lookup("Paris", 3, "secret-1");

  // The command's key is the core's key.
  Result<std::string> key =
      CallKey("lookup", "1", R"({"city": "Paris", "days": 3, "api_key": "x"})",
              CallShape{"", {"api_key"}, {}, TextNormalization::kNone});
  ASSERT_TRUE(key.ok()) << key.status().message();
  EXPECT_TRUE(
      registry_.Get("local").value()->Get(KeyRef::Of(*key), RealClock()->Now()).has_value());

  EXPECT_EQ(Run(InspectMain, {"--tool", "lookup", "--args",
                              R"({"city": "Paris", "days": 3, "api_key": "secret-2"})"}),
            0);
  EXPECT_EQ(Run(InspectMain, {"--tool", "lookup", "--args", R"({"city": "Paris", "days": 4})"}), 1);
  EXPECT_EQ(Run(InspectMain, {"--tool", "lookup", "--args", R"(["Paris", 3])"}), 2);
  EXPECT_EQ(Run(InspectMain, {"--tool", "lookup", "--args", "{not json"}), 2);
  EXPECT_EQ(Run(InspectMain, {"--tool", "lookup"}), 2);
}

TEST(CacheCommandsRedisTest, ClearAndInspectReachAToolsEntriesInRedis) {
  testing::RedisServer server;
  ASSERT_TRUE(server.ok()) << server.error();
  testing::TempDir dir("toolops-cli-redis");
  const std::string config = dir.File("toolops.toml");
  {
    FILE* f = std::fopen(config.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fprintf(f, "[stores.shared]\ntype = \"redis\"\nport = %d\nnamespace = \"agents\"\n",
                 server.port());
    std::fclose(f);
  }
  RedisStoreOptions o;
  o.port = server.port();
  o.name = "shared";
  o.key_namespace = "agents";
  StoreRegistry registry;
  registry.Register("memory", std::shared_ptr<Store>(NewMemoryStore({}).value()));
  registry.Register("shared", std::shared_ptr<Store>(NewRedisStore(o).value()));
  Environment env;
  env.stores = &registry;
  ToolPolicy policy;
  policy.cache.shared_store = "shared";
  auto search = Readonly(
      {"search", "1", {"q"}}, policy, [](std::string q) { return q; }, env);
  auto other = Readonly(
      {"other", "1", {"q"}}, policy, [](std::string q) { return q; }, env);
  search("a");
  search("b");
  other("a");
  Store& shared = *registry.Get("shared").value();
  ASSERT_EQ(shared.Stats().entries, 3u);

  EXPECT_EQ(InspectMain({"--config", config, "--tool", "search", "--args", R"({"q": "a"})"}), 0);
  EXPECT_EQ(ClearMain({"--config", config, "shared", "--tool", "search", "--yes"}), 0);
  EXPECT_EQ(shared.Stats().entries, 1u);
  EXPECT_EQ(InspectMain({"--config", config, "--tool", "search", "--args", R"({"q": "a"})"}), 1);
  EXPECT_EQ(InspectMain({"--config", config, "--tool", "other", "--args", R"({"q": "a"})"}), 0);
}

TEST(CallKeyTest, ScopeComesFirstAndKeyParamsFilter) {
  CallShape shape{"tenant", {}, {"q"}, TextNormalization::kNone};
  Result<std::string> a = CallKey("t", "1", R"({"q": "x", "tenant": "acme", "page": 1})", shape);
  Result<std::string> b = CallKey("t", "1", R"({"tenant": "acme", "q": "x", "page": 2})", shape);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);  // page is not a key parameter; the scope goes first wherever it is.
  Result<std::string> missing = CallKey("t", "1", R"({"q": "x"})", shape);
  EXPECT_FALSE(missing.ok());
}

}  // namespace
}  // namespace toolops::cli
