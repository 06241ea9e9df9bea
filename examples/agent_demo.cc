// examples/agent_demo.cc
//
// A small multi-agent run on embedded defaults (in-memory store, no server):
// a planner fans out to sub-agents that call three paid, flaky tools. Every
// tool is wrapped once; the counters at the end show what ToolOps saved and
// what it did when tools failed.
//
//   web_search   paid ($0.005), 20 ms; popular queries repeat and sub-agents
//                ask at once -> fresh hits and coalescing
//   weather_api  paid ($0.002), fails 30% of the time with UNAVAILABLE ->
//                retries with jittered backoff under a budget
//   stock_quote  paid ($0.010), goes down for good halfway through -> the
//                breaker opens, stale-if-error and the fallback answer
//   send_email   a side effect: never cached, never coalesced

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "toolops/tool.h"

using namespace std::chrono_literals;
using toolops::Counter;

namespace {

struct Upstream {
  std::atomic<int> calls{0};
};

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

void PrintTool(const char* name, const toolops::StatsSnapshot& s, double cost,
               const toolops::ToolCore& core) {
  std::string breaker = std::string(core.breaker_state()) + " (" +
                        std::to_string(core.breaker_transitions()) + " changes)";
  uint64_t upstream = s[Counter::kAttempts];
  std::printf("%-12s %7llu %7llu %6llu %6llu %6llu %6llu %6llu %6llu %6llu %8.3f  %s\n", name,
              static_cast<unsigned long long>(s[Counter::kCalls]),
              static_cast<unsigned long long>(upstream),
              static_cast<unsigned long long>(s[Counter::kFreshHit]),
              static_cast<unsigned long long>(s[Counter::kCoalesced]),
              static_cast<unsigned long long>(s[Counter::kStaleIfError]),
              static_cast<unsigned long long>(s[Counter::kRetries]),
              static_cast<unsigned long long>(s[Counter::kRejectedByBreaker]),
              static_cast<unsigned long long>(s[Counter::kFallback]),
              static_cast<unsigned long long>(s[Counter::kUpstreamError]),
              cost * static_cast<double>(s.saved()), breaker.c_str());
}

}  // namespace

int main() {
  Upstream search_api, weather_api, quote_api, mail_api;
  std::atomic<bool> quotes_down{false};

  toolops::ToolPolicy search_policy;
  search_policy.cost_per_call = 0.005;
  search_policy.cache.ttl = 10min;
  search_policy.cache.normalization = toolops::TextNormalization::kNfkcCasefold;
  auto web_search = toolops::Readonly({"web_search", "1", {"query"}}, search_policy,
                                      [&](const std::string& query) {
                                        ++search_api.calls;
                                        std::this_thread::sleep_for(20ms);
                                        return "top results for '" + query + "'";
                                      });

  toolops::ToolPolicy weather_policy;
  weather_policy.cost_per_call = 0.002;
  weather_policy.cache.ttl = 5min;
  weather_policy.retry.max_attempts = 4;
  weather_policy.retry.initial_backoff = 2ms;
  weather_policy.retry.max_backoff = 20ms;
  weather_policy.retry.budget_min_retries_per_second = 20;
  std::mt19937 weather_rng(7);
  std::mutex weather_mu;
  auto weather = toolops::Readonly({"weather_api", "1", {"city"}}, weather_policy,
                                   [&](const std::string& city) -> toolops::Result<std::string> {
                                     ++weather_api.calls;
                                     std::this_thread::sleep_for(5ms);
                                     std::lock_guard<std::mutex> lock(weather_mu);
                                     if (weather_rng() % 10 < 3)
                                       return toolops::UnavailableError("weather backend: 503");
                                     return "forecast for " + city + ": mild";
                                   });

  toolops::ToolPolicy quote_policy;
  quote_policy.cost_per_call = 0.010;
  quote_policy.cache.ttl = 50ms;              // Quotes go stale fast...
  quote_policy.cache.stale_if_error = 10min;  // ...but a stale quote beats none.
  quote_policy.breaker.window_size = 20;
  quote_policy.breaker.minimum_calls = 10;
  quote_policy.breaker.open_wait = 200ms;
  auto stock_quote =
      toolops::Readonly({"stock_quote", "1", {"symbol"}}, quote_policy,
                        [&](const std::string& symbol) -> toolops::Result<double> {
                          ++quote_api.calls;
                          std::this_thread::sleep_for(2ms);
                          if (quotes_down)
                            return toolops::UnavailableError("quote service is down");
                          return 100.0 + static_cast<double>(symbol.size());
                        });
  stock_quote.SetFallback(-1.0);  // "price unknown"

  toolops::ToolPolicy mail_policy;
  auto send_email = toolops::SideEffect({"send_email", "1", {"to", "body"}}, mail_policy,
                                        [&](const std::string& to, const std::string& body) {
                                          ++mail_api.calls;
                                          return true;
                                        });

  // The planner: 40 conversations, each fanned out to 6 sub-agents that run
  // at once. Popular questions repeat across conversations (and in other
  // letter case); the sub-agents of one conversation often ask the same thing.
  const std::vector<std::string> topics = {"Paris hotels", "Lyon museums",  "GPU prices",
                                           "Rust async",   "Tokyo weather", "EU AI act"};
  const std::vector<std::string> cities = {"Paris", "Lyon", "Tokyo", "Oslo"};
  const std::vector<std::string> symbols = {"ACME", "INITECH", "UMBRELLA", "HOOLI", "STARK"};
  std::printf("ToolOps agent demo: 40 conversations x 6 sub-agents, embedded defaults\n\n");
  for (int conversation = 0; conversation < 40; ++conversation) {
    if (conversation == 20) quotes_down = true;  // An outage halfway through.
    std::vector<std::thread> agents;
    for (int agent = 0; agent < 6; ++agent) {
      agents.emplace_back([&, conversation, agent] {
        const std::string& topic = topics[(conversation + agent / 3) % topics.size()];
        // Half the agents shout: the same query in capitals shares the entry
        // (the tool's policy case-folds text before keying).
        web_search(agent % 2 ? topic : Upper(topic));
        // An agent carries on without the answer when a tool fails; the
        // counters below show how often that happened.
        (void)weather.Call(cities[(conversation * 7 + agent) % cities.size()]);
        (void)stock_quote.Call(symbols[(conversation + agent) % symbols.size()]);
        // During the outage, agents also ask for symbols never quoted before:
        // nothing stale to serve, so the breaker fails them fast and the
        // fallback answers.
        if (quotes_down && agent < 2) (void)stock_quote.Call("NEW" + std::to_string(conversation));
        if (agent == 0) send_email("user@example.com", "summary " + std::to_string(conversation));
      });
    }
    for (auto& a : agents) a.join();
    std::this_thread::sleep_for(10ms);
  }

  std::printf("%-12s %7s %7s %6s %6s %6s %6s %6s %6s %6s %8s  %s\n", "tool", "calls", "upstrm",
              "hit", "coal", "stale", "retry", "brk", "fallbk", "error", "saved $", "breaker");
  PrintTool("web_search", web_search.stats(), search_policy.cost_per_call, web_search.core());
  PrintTool("weather_api", weather.stats(), weather_policy.cost_per_call, weather.core());
  PrintTool("stock_quote", stock_quote.stats(), quote_policy.cost_per_call, stock_quote.core());
  PrintTool("send_email", send_email.stats(), 0.0, send_email.core());

  double spent = 0.005 * search_api.calls + 0.002 * weather_api.calls + 0.010 * quote_api.calls;
  double naive = 0.005 * static_cast<double>(web_search.stats()[Counter::kCalls]) +
                 0.002 * static_cast<double>(weather.stats()[Counter::kCalls]) +
                 0.010 * static_cast<double>(stock_quote.stats()[Counter::kCalls]);
  std::printf(
      "\nupstream calls actually made: web_search=%d weather_api=%d stock_quote=%d "
      "send_email=%d\n",
      search_api.calls.load(), weather_api.calls.load(), quote_api.calls.load(),
      mail_api.calls.load());
  std::printf("spend without ToolOps (one paid call per request, no retries): $%.3f\n", naive);
  std::printf("spend with ToolOps: $%.3f\n", spent);
  return 0;
}
