// src/observe/log_test.cc
//
// Structured logs and secret masking: the word rule for secret-looking
// names, masking in free text, JSON lines with levels, and the proof that a
// secret argument reaches no log line, no cache key and no span.

#include "toolops/log.h"

#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http_recorder.h"
#include "toolops/secrets.h"
#include "toolops/tool.h"
#include "toolops/tracing.h"

namespace toolops {
namespace {

TEST(SecretNameTest, SecretWordsMatchAsWholeWordsOnly) {
  struct Case {
    const char* name;
    bool secret;
  };
  const Case cases[] = {
      {"api_key", true},         {"apikey", true},
      {"apiKey", true},          {"X-Api-Key", true},
      {"token", true},           {"access_token", true},
      {"refreshToken", true},    {"password", true},
      {"db_passwd", true},       {"client_secret", true},
      {"Authorization", true},   {"auth", true},
      {"AUTH_HEADER", true},     {"cookie", true},
      {"session", true},         {"session_id", true},
      {"credentials", true},     {"private_key", true},
      {"bearer", true},          {"author", false},
      {"keyword", false},        {"monkey", false},
      {"tokenizer_name", false}, {"query", false},
      {"authors_list", false},   {"key", false},
      {"passage", false},        {"sessions_count", false},
      {"secretary", false},      {"city", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(LooksLikeSecretName(c.name), c.secret) << c.name;
  }
}

TEST(SecretTextTest, ValuesOfSecretNamesAreMaskedInText) {
  struct Case {
    const char* in;
    const char* out;
  };
  const Case cases[] = {
      {"GET /search?q=paris&api_key=sk-123&page=2", "GET /search?q=paris&api_key=***&page=2"},
      {"password: hunter2 then", "password: *** then"},
      {R"({"token": "abc\"def", "q": "x"})", R"({"token": "***", "q": "x"})"},
      {"Authorization: Bearer eyJhbGc.x.y", "Authorization: Bearer ***"},
      {"author=Jane keyword=cats", "author=Jane keyword=cats"},
      {"store 'redis' failed: timeout", "store 'redis' failed: timeout"},
      {"url https://host:443/x", "url https://host:443/x"},
  };
  for (const Case& c : cases) EXPECT_EQ(MaskSecretsInText(c.in), c.out) << c.in;
}

TEST(JsonLogTest, LinesAreJsonWithTheRecordsFields) {
  LogRecord record{LogLevel::kWarning, "store.down", "store 'r' failed: token=abc", "search", "r"};
  std::string line = FormatJsonLogLine(record, 1'780'000'000'123'000'000);
  nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["event"], "store.down");
  EXPECT_EQ(j["message"], "store 'r' failed: token=***");
  EXPECT_EQ(j["tool"], "search");
  EXPECT_EQ(j["store"], "r");
  EXPECT_EQ(j["time"], "2026-05-28T20:26:40.123Z");
  LogRecord bare{LogLevel::kInfo, "e", "m", {}, {}};
  nlohmann::json b = nlohmann::json::parse(FormatJsonLogLine(bare, 0));
  EXPECT_FALSE(b.contains("tool"));
  EXPECT_FALSE(b.contains("store"));
}

TEST(JsonLogTest, TheLevelFiltersRecordsBeforeTheSink) {
  std::vector<std::string> events;
  SetLogSink([&](const LogRecord& r) { events.emplace_back(r.event); });
  SetLogLevel(LogLevel::kInfo);
  Log(LogLevel::kDebug, "debug.event", "dropped");
  Log(LogLevel::kInfo, "info.event", "kept");
  Log(LogLevel::kError, "error.event", "kept", LogFields{"t", "s"});
  SetLogLevel(LogLevel::kDebug);
  SetLogSink(nullptr);
  EXPECT_EQ(events, (std::vector<std::string>{"info.event", "error.event"}));
  EXPECT_EQ(ParseLogLevel("WARN").value(), LogLevel::kWarning);
  EXPECT_FALSE(ParseLogLevel("loud").ok());
}

TEST(JsonLogTest, ClearingTheLevelLetsEveryRecordReachTheSinkAgain) {
  std::vector<std::string> events;
  SetLogSink([&](const LogRecord& r) { events.emplace_back(r.event); });
  SetLogLevel(LogLevel::kError);
  Log(LogLevel::kInfo, "filtered.event", "dropped");
  ClearLogLevel();
  Log(LogLevel::kDebug, "debug.event", "kept");
  Log(LogLevel::kInfo, "info.event", "kept");
  SetLogSink(nullptr);
  EXPECT_EQ(events, (std::vector<std::string>{"debug.event", "info.event"}));
}

TEST(JsonLogTest, TheEnvironmentChoosesFormatAndLevel) {
  setenv("TOOLOPS_LOG_FORMAT", "yaml", 1);
  EXPECT_NE(ConfigureLoggingFromEnv().message().find("TOOLOPS_LOG_FORMAT"), std::string_view::npos);
  setenv("TOOLOPS_LOG_FORMAT", "json", 1);
  setenv("TOOLOPS_LOG_LEVEL", "verbose", 1);
  EXPECT_NE(ConfigureLoggingFromEnv().message().find("TOOLOPS_LOG_LEVEL"), std::string_view::npos);
  unsetenv("TOOLOPS_LOG_FORMAT");
  unsetenv("TOOLOPS_LOG_LEVEL");
}

// A store that keeps every key it sees, so that a test can read them.
class KeyRecordingStore final : public Store {
 public:
  KeyRecordingStore() : inner_(NewMemoryStore(MemoryStoreOptions{}).value().release()) {}
  std::optional<StoredValue> Get(const KeyRef& key, TimePoint now) override {
    Record(key);
    return inner_->Get(key, now);
  }
  Status Put(const KeyRef& key, const StoredValue& value, TimePoint now) override {
    Record(key);
    return inner_->Put(key, value, now);
  }
  bool Erase(const KeyRef& key) override { return inner_->Erase(key); }
  size_t EraseByPrefix(std::string_view prefix) override { return inner_->EraseByPrefix(prefix); }
  StoreStats Stats() const override { return inner_->Stats(); }
  std::string_view name() const override { return "keys"; }
  std::vector<std::string> keys() {
    std::lock_guard lock(mu_);
    return keys_;
  }

 private:
  void Record(const KeyRef& key) {
    std::lock_guard lock(mu_);
    keys_.emplace_back(key.bytes);
  }
  std::unique_ptr<Store> inner_;
  std::mutex mu_;
  std::vector<std::string> keys_;
};

TEST(SecretsTest, NoSecretReachesALogLineAKeyOrASpan) {
  testing::HttpRecorder collector;
  TracingOptions options;
  options.enabled = true;
  options.endpoint = collector.url("/v1/traces");
  options.sampler = TraceSampler::kAlwaysOn;
  options.record_arguments = true;
  ASSERT_TRUE(ConfigureTracing(options).ok());
  std::vector<std::string> lines;
  std::mutex lines_mu;
  SetLogSink([&](const LogRecord& r) {
    std::lock_guard lock(lines_mu);
    lines.push_back(FormatJsonLogLine(r, 0));
  });

  auto store = std::make_shared<KeyRecordingStore>();
  StoreRegistry registry;
  registry.Register("keys", store);
  Environment env;
  env.stores = &registry;
  ToolPolicy policy;
  policy.cache.store = "keys";
  policy.sensitive_params = {"account"};  // Declared; api_key is only named like a secret.
  policy.retry.max_attempts = 1;
  int calls = 0;
  auto tool = Readonly(
      {"weather", "1", {"city", "api_key", "account"}}, policy,
      [&](const std::string& city, const std::string& key,
          const std::string& account) -> Result<std::string> {
        ++calls;
        if (city == "fail") {
          // A careless tool puts its credentials in the error.
          return UnavailableError("GET /v1?city=fail&api_key=" + key + " failed");
        }
        Log(LogLevel::kWarning, "tool.note", "called with api_key=" + key + " for " + city);
        return R"({"city": ")" + city + R"(", "token": "tok-SECRET-3", "temp": 21})";
      },
      env);
  EXPECT_NE(tool("paris", "sk-SECRET-1", "acct-SECRET-2").find("paris"), std::string::npos);
  EXPECT_NE(tool("paris", "sk-SECRET-9", "acct-SECRET-8").find("paris"), std::string::npos);
  EXPECT_EQ(calls, 1);  // The secret is not part of the key: the second call is a hit.
  EXPECT_FALSE(tool.Call("fail", "sk-SECRET-4", "acct-SECRET-5").ok());
  ASSERT_TRUE(FlushTracing(std::chrono::seconds(10)));
  SetLogSink(nullptr);
  ShutdownTracing();

  std::vector<std::string> keys = store->keys();
  ASSERT_FALSE(keys.empty());
  for (const std::string& key : keys) {
    EXPECT_EQ(key.find("SECRET"), std::string::npos);
    EXPECT_NE(key.find("paris") == std::string::npos && key.find("fail") == std::string::npos,
              true);
  }
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) EXPECT_EQ(line.find("SECRET"), std::string::npos) << line;
  std::string bodies;
  for (const auto& r : collector.requests()) bodies += r.body;
  EXPECT_EQ(bodies.find("SECRET"), std::string::npos);
  // The arguments were recorded, with the secrets masked.
  EXPECT_NE(bodies.find("gen_ai.tool.call.arguments"), std::string::npos);
  EXPECT_NE(bodies.find(R"(\"api_key\": \"***\")"), std::string::npos);
  EXPECT_NE(bodies.find(R"(\"city\": \"paris\")"), std::string::npos);
  EXPECT_NE(bodies.find("gen_ai.tool.call.result"), std::string::npos);
}

}  // namespace
}  // namespace toolops
