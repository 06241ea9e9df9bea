// src/replay/trace_test.cc

#include "replay/trace.h"

#include <sstream>

#include <gtest/gtest.h>

namespace toolops {
namespace {

TEST(TraceTest, ParsesAFullLine) {
  Result<TraceCall> call = ParseTraceLine(
      R"({"ts":"2025-06-02T09:00:01.250Z","conversation":"c1","agent":"planner",)"
      R"("tool":"web_search","args":{"query":"weather in Paris","n":3},"cost":0.008,)"
      R"("latency_ms":840.5,"outcome":"unavailable","intent":"weather-paris"})");
  ASSERT_TRUE(call.ok()) << call.status().ToString();
  EXPECT_EQ(call->time_ns, 1'748'854'801'250'000'000);
  EXPECT_EQ(call->conversation, "c1");
  EXPECT_EQ(call->agent, "planner");
  EXPECT_EQ(call->tool, "web_search");
  ASSERT_NE(call->args.Find("query"), nullptr);
  EXPECT_EQ(call->args.Find("query")->string_value(), "weather in Paris");
  EXPECT_EQ(call->args.Find("n")->int_value(), 3);
  EXPECT_DOUBLE_EQ(*call->cost, 0.008);
  EXPECT_EQ(*call->latency, std::chrono::microseconds(840'500));
  EXPECT_EQ(*call->outcome, StatusCode::kUnavailable);
  EXPECT_EQ(call->intent, "weather-paris");
}

TEST(TraceTest, OptionalFieldsMayBeMissing) {
  Result<TraceCall> call = ParseTraceLine(R"({"ts":1748854800.5,"tool":"t"})");
  ASSERT_TRUE(call.ok()) << call.status().ToString();
  EXPECT_EQ(call->time_ns, 1'748'854'800'500'000'000);
  EXPECT_EQ(call->args.kind(), Value::Kind::kMap);
  EXPECT_FALSE(call->cost.has_value());
  EXPECT_FALSE(call->latency.has_value());
  EXPECT_FALSE(call->outcome.has_value());
  EXPECT_TRUE(call->intent.empty());
}

TEST(TraceTest, MalformedLinesSayWhatIsWrong) {
  struct Case {
    const char* line;
    const char* message_part;
  };
  const Case cases[] = {
      {"not json", "not valid JSON"},
      {"[1,2]", "not a JSON object"},
      {R"({"tool":"t"})", "no \"ts\""},
      {R"({"ts":"yesterday","tool":"t"})", "RFC 3339"},
      {R"({"ts":"2025-06-02T09:00:00","tool":"t"})", "RFC 3339"},
      {R"({"ts":1,"tool":""})", "\"tool\" is empty"},
      {R"({"ts":1})", "no \"tool\""},
      {R"({"ts":1,"tool":"t","args":[1]})", "\"args\" must be a JSON object"},
      {R"({"ts":1,"tool":"t","cost":-1})", "\"cost\""},
      {R"({"ts":1,"tool":"t","latency_ms":"fast"})", "\"latency_ms\""},
      {R"({"ts":1,"tool":"t","outcome":"exploded"})", "\"outcome\" is 'exploded'"},
      {R"({"ts":1,"tool":"t","intent":7})", "\"intent\" must be a string"},
  };
  for (const Case& c : cases) {
    Result<TraceCall> call = ParseTraceLine(c.line);
    ASSERT_FALSE(call.ok()) << c.line;
    EXPECT_EQ(call.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(call.status().message().find(c.message_part), std::string::npos)
        << c.line << " -> " << call.status().message();
  }
}

TEST(TraceTest, Rfc3339RoundTripsAndHonoursOffsets) {
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseRfc3339("2025-06-02T11:00:00+02:00"), *ParseRfc3339("2025-06-02T09:00:00Z"));
  EXPECT_EQ(*ParseRfc3339("2024-02-29T23:59:59.999999Z"), 1'709'251'199'999'999'000);
  EXPECT_EQ(FormatRfc3339(1'748'854'801'250'000'000), "2025-06-02T09:00:01.250000Z");
  for (int64_t ns :
       {int64_t{0}, int64_t{1'709'251'199'999'999'000}, int64_t{951'782'400'000'001'000}}) {
    EXPECT_EQ(*ParseRfc3339(FormatRfc3339(ns)), ns);
  }
  EXPECT_FALSE(ParseRfc3339("2025-13-01T00:00:00Z"));
  EXPECT_FALSE(ParseRfc3339("2025-06-02T09:00:00.Z"));
}

TEST(TraceTest, FormatThenParseGivesTheSameCall) {
  TraceCall call;
  call.time_ns = 1'748'854'801'250'000'000;
  call.conversation = "c";
  call.agent = "a";
  call.tool = "docs_search";
  call.args = Value(Value::Map{{"question", Value("Ça va?")}, {"k", Value(2)}});
  call.cost = 0.25;
  call.latency = std::chrono::milliseconds(12);
  call.outcome = StatusCode::kResourceExhausted;
  call.intent = "i";
  Result<TraceCall> back = ParseTraceLine(FormatTraceLine(call));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->time_ns, call.time_ns);
  EXPECT_EQ(back->args.ToJson(), call.args.ToJson());
  EXPECT_EQ(*back->outcome, StatusCode::kResourceExhausted);
  EXPECT_EQ(*back->latency, *call.latency);
  EXPECT_EQ(back->intent, "i");
}

TEST(TraceReaderTest, SkipsMalformedLinesAndNamesThem) {
  std::istringstream in(
      "{\"ts\":1,\"tool\":\"t\"}\n"
      "garbage\n"
      "\n"
      "{\"ts\":2,\"tool\":\"t\"}\r\n"
      "{\"ts\":3}\n"
      "{\"ts\":4,\"tool\":\"t\"}\n");
  TraceReader reader(&in, "test");
  std::vector<int64_t> seconds;
  while (auto call = reader.Next()) seconds.push_back(call->time_ns / 1'000'000'000);
  EXPECT_TRUE(reader.status().ok());
  EXPECT_EQ(seconds, (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(reader.lines(), 6u);
  EXPECT_EQ(reader.calls(), 3u);
  EXPECT_EQ(reader.malformed(), 2u);
  ASSERT_EQ(reader.errors().size(), 2u);
  EXPECT_EQ(reader.errors()[0].line, 2u);
  EXPECT_EQ(reader.errors()[1].line, 5u);
  EXPECT_NE(reader.errors()[1].message.find("no \"tool\""), std::string::npos);
}

TEST(TraceReaderTest, FailModeStopsAtTheFirstMalformedLine) {
  std::istringstream in(
      "{\"ts\":1,\"tool\":\"t\"}\n{\"ts\":2,\"tool\":5}\n{\"ts\":3,\"tool\":\"t\"}\n");
  TraceReaderOptions options;
  options.on_error = OnError::kFail;
  TraceReader reader(&in, "trace.jsonl", options);
  while (reader.Next()) {
  }
  ASSERT_FALSE(reader.status().ok());
  EXPECT_NE(reader.status().message().find("trace.jsonl line 2"), std::string::npos)
      << reader.status().message();
}

TEST(TraceReaderTest, ReordersWithinTheWindowAndRefusesBeyondIt) {
  std::istringstream in(
      "{\"ts\":2,\"tool\":\"t\"}\n"
      "{\"ts\":1,\"tool\":\"t\"}\n"  // Within the window: put first.
      "{\"ts\":5,\"tool\":\"t\"}\n"
      "{\"ts\":6,\"tool\":\"t\"}\n"
      "{\"ts\":7,\"tool\":\"t\"}\n"
      "{\"ts\":0,\"tool\":\"t\"}\n");  // Far out of order.
  TraceReaderOptions options;
  options.reorder_window = 2;
  TraceReader reader(&in, "t", options);
  std::vector<int64_t> seconds;
  while (auto call = reader.Next()) seconds.push_back(call->time_ns / 1'000'000'000);
  EXPECT_EQ(seconds, (std::vector<int64_t>{1, 2, 5, 6, 7}));
  ASSERT_EQ(reader.errors().size(), 1u);
  EXPECT_EQ(reader.errors()[0].line, 6u);
  EXPECT_NE(reader.errors()[0].message.find("out of order"), std::string::npos);
}

}  // namespace
}  // namespace toolops
