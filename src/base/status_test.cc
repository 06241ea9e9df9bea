// src/base/status_test.cc

#include "toolops/status.h"

#include <gtest/gtest.h>

#include "toolops/bytes.h"
#include "toolops/clock.h"

namespace toolops {
namespace {

TEST(StatusTest, OkStatusCarriesNothing) {
  Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.code(), StatusCode::kOk);
  EXPECT_EQ(ok.guard(), Guard::kNone);
  EXPECT_EQ(ok.ToString(), "OK");
}

TEST(StatusTest, ErrorNamesCodeGuardAndMessage) {
  Status s(StatusCode::kUnavailable, "circuit open", Guard::kBreaker, std::chrono::seconds(3));
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.ToString(), "UNAVAILABLE [breaker]: circuit open");
  EXPECT_EQ(s.retry_after(), std::chrono::seconds(3));
  EXPECT_EQ(s.WithContext("search").message(), "search: circuit open");
  EXPECT_EQ(s.WithContext("search").guard(), Guard::kBreaker);
}

TEST(StatusTest, TransientCodesAreTheRetryableOnes) {
  EXPECT_TRUE(IsTransient(StatusCode::kUnavailable));
  EXPECT_TRUE(IsTransient(StatusCode::kResourceExhausted));
  EXPECT_FALSE(IsTransient(StatusCode::kInvalidArgument));
  EXPECT_FALSE(IsTransient(StatusCode::kNotFound));
  EXPECT_FALSE(IsTransient(StatusCode::kInternal));
}

TEST(ResultTest, HoldsValueOrError) {
  Result<int> good = 7;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 7);
  Result<int> bad = UnavailableError("down");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kUnavailable);
  EXPECT_THROW(std::move(bad).ValueOrThrow(), ToolError);
}

TEST(ResultTest, OkStatusIsNotAValue) {
  Result<int> r = Status();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

TEST(BytesTest, CopiesShareOneBuffer) {
  Bytes a = Bytes::Copy("hello world");
  Bytes b = a;
  EXPECT_EQ(a.data(), b.data());
  EXPECT_EQ(b.view(), "hello world");
  EXPECT_EQ(a.footprint(), 8u + 11u);
  Bytes c = std::move(a);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(c.view(), "hello world");
  EXPECT_EQ(Bytes().view(), "");
}

TEST(FakeClockTest, SleepAdvancesTimeAtOnce) {
  FakeClock clock;
  TimePoint start = clock.Now();
  clock.SleepFor(std::chrono::seconds(5));
  EXPECT_EQ(clock.Now() - start, std::chrono::seconds(5));
  EXPECT_EQ(clock.slept(), std::chrono::seconds(5));
  clock.Advance(std::chrono::milliseconds(1));
  EXPECT_EQ(clock.slept(), std::chrono::seconds(5));
}

TEST(SeededRandomTest, SameSeedSameStreamAndUniformInRange) {
  SeededRandom a(42), b(42);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(a.Next(), b.Next());
    double u = a.Uniform();
    b.Uniform();
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
  }
}

}  // namespace
}  // namespace toolops
