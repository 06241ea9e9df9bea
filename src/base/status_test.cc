// src/base/status_test.cc

#include "toolops/status.h"

#include <thread>
#include <vector>

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

// References handed out from spares stay valid after the spares, the source
// and the other references are gone, wherever they are dropped (a miscount
// shows as a use after free or a leak under the sanitizers).
TEST(SpareRefsTest, HandedOutReferencesOutliveTheSparesAndTheSource) {
  Bytes source = Bytes::Copy("hello world");
  Bytes other = Bytes::Copy("other");
  std::vector<Bytes> kept;
  {
    SpareRefs spares;
    for (int i = 0; i < 100; ++i) {
      Bytes b = spares.Take(source);
      EXPECT_EQ(b.data(), source.data());
      if (i % 3 == 0) kept.push_back(std::move(b));  // The others come back to the spares.
    }
    Bytes copy = kept.back();                       // Copies count through the shared count.
    EXPECT_EQ(spares.Take(other).view(), "other");  // Rebinds: the spares of source go back.
    kept.push_back(spares.Take(source));
    EXPECT_EQ(spares.Take(Bytes()).view(), "");
  }
  source = Bytes();
  std::thread elsewhere([half = std::vector<Bytes>(kept.begin(), kept.begin() + 17)] {
    for (const Bytes& b : half) EXPECT_EQ(b.view(), "hello world");
  });
  elsewhere.join();
  for (const Bytes& b : kept) EXPECT_EQ(b.view(), "hello world");
}

TEST(SpareRefsTest, ReferencesTakenOnOneThreadMayBeDroppedOnAnother) {
  Bytes source = Bytes::Copy("shared");
  std::vector<Bytes> handed;
  std::thread owner([&] {
    SpareRefs spares;
    for (int i = 0; i < 1000; ++i) handed.push_back(spares.Take(source));
  });
  owner.join();  // The owner's spares went back when it exited.
  source = Bytes();
  std::vector<std::thread> droppers;
  for (int t = 0; t < 4; ++t) {
    droppers.emplace_back([part = std::vector<Bytes>(handed.begin() + t * 250,
                                                     handed.begin() + (t + 1) * 250)]() mutable {
      for (const Bytes& b : part) EXPECT_EQ(b.view(), "shared");
      part.clear();
    });
  }
  handed.clear();
  for (std::thread& t : droppers) t.join();
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
