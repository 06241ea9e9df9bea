// src/replay/sample.cc

#include "replay/sample.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <unordered_map>
#include <unordered_set>

#include "semantic/pairs.h"

namespace toolops {
namespace {

constexpr int64_t kMs = 1'000'000;

// A sequential SplitMix64 stream: the same numbers on every platform (the
// standard library's distributions are not specified bit for bit).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // In [lo, hi].
  uint64_t Between(uint64_t lo, uint64_t hi) { return lo + Next() % (hi - lo + 1); }
  double Exponential(double mean) { return -mean * std::log(1.0 - Uniform()); }
  double Normal() {
    double u1 = std::max(Uniform(), 1e-12);
    return std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * Uniform());
  }

 private:
  uint64_t state_;
};

// Ranks 0..n-1 with probability proportional to 1 / (rank + 1)^s, mapped to
// items through a seeded permutation (the most popular item is a random one).
class Zipf {
 public:
  Zipf(size_t n, double s, Rng& rng) : cdf_(n), items_(n) {
    double sum = 0;
    for (size_t r = 0; r < n; ++r) cdf_[r] = (sum += 1.0 / std::pow(static_cast<double>(r + 1), s));
    for (double& c : cdf_) c /= sum;
    for (size_t i = 0; i < n; ++i) items_[i] = i;
    for (size_t i = n; i > 1; --i) std::swap(items_[i - 1], items_[rng.Next() % i]);
  }
  size_t Draw(Rng& rng) const {
    double u = rng.Uniform();
    size_t rank = std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin();
    return items_[std::min(rank, items_.size() - 1)];
  }
  // The item of a rank (0: the most popular).
  size_t ItemOfRank(size_t rank) const { return items_[rank]; }

 private:
  std::vector<double> cdf_;
  std::vector<size_t> items_;
};

enum SampleTool { kWebSearch, kDocsSearch, kCrmLookup, kStockQuote, kTools };

struct ToolShape {
  const char* name;
  double weight;  // Share of steps.
  double cost;
  double median_ms;
  double p95_ms;
};

constexpr ToolShape kShapes[kTools] = {
    {"web_search", 0.42, 0.008, 900, 2500},
    {"docs_search", 0.25, 0.003, 350, 900},
    {"crm_lookup", 0.18, 0.002, 120, 400},
    {"stock_quote", 0.15, 0.001, 80, 250},
};

constexpr const char* kRoles[] = {"planner", "researcher", "coder", "critic", "writer"};

std::string Normalized(const std::string& text) {
  std::string out;
  for (char c : text) out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  size_t a = out.find_first_not_of(" \t");
  size_t b = out.find_last_not_of(" \t");
  return a == std::string::npos ? std::string() : out.substr(a, b - a + 1);
}

std::string Numbered(const char* prefix, size_t n, int width) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%s%0*zu", prefix, width, n);
  return buffer;
}

// The distinct lower-case words of `text`, without the commonest function
// words.
std::vector<std::string> ContentWords(const std::string& text) {
  static const std::unordered_set<std::string> kStop = {
      "a",    "an",   "the",   "is",  "are",   "was", "were", "be",    "to",   "of", "in",   "on",
      "for",  "and",  "or",    "it",  "its",   "i",   "you",  "my",    "your", "do", "does", "did",
      "can",  "how",  "what",  "why", "which", "who", "when", "where", "with", "at", "by",   "from",
      "that", "this", "there", "as",  "if",    "me",  "we",   "s",     "t"};
  std::vector<std::string> words;
  std::string word;
  auto flush = [&] {
    if (!word.empty() && !kStop.count(word) &&
        std::find(words.begin(), words.end(), word) == words.end()) {
      words.push_back(word);
    }
    word.clear();
  };
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || u >= 0x80) {
      word.push_back(static_cast<char>(std::tolower(u)));
    } else {
      flush();
    }
  }
  flush();
  return words;
}

bool HasData(const std::string& dir) {
  std::error_code ec;
  return !dir.empty() &&
         std::filesystem::exists(std::filesystem::path(dir) / "paraphrase_pairs_qqp.csv", ec) &&
         std::filesystem::exists(std::filesystem::path(dir) / "paraphrase_pairs_docs.json", ec);
}

}  // namespace

Result<SampleData> LoadSampleData(const std::string& dir) {
  std::string qqp = dir + "/paraphrase_pairs_qqp.csv";
  std::string docs = dir + "/paraphrase_pairs_docs.json";
  Result<std::vector<LabelledPair>> qqp_pairs = ReadPairsCsv(qqp);
  if (!qqp_pairs.ok()) {
    return qqp_pairs.status().WithContext(
        "sample data (pass --data DIR holding "
        "paraphrase_pairs_qqp.csv and "
        "paraphrase_pairs_docs.json)");
  }
  Result<std::vector<LabelledPair>> docs_pairs = ReadPairsJson(docs);
  if (!docs_pairs.ok()) {
    return docs_pairs.status().WithContext(
        "sample data (pass --data DIR holding "
        "paraphrase_pairs_qqp.csv and "
        "paraphrase_pairs_docs.json)");
  }
  SampleData data;
  // Ground truth: the data files hold one question under several pairs
  // ("No, it doesn't exist in version 2.10.0." / "... in v2.10.0."), and two
  // intents must never mean the same. A pair is left out when either wording
  // shares half or more of its content words (Jaccard) with a wording already
  // chosen for that tool. Near misses with fewer shared words ("learn Python"
  // / "learn Java") stay: they are what the match guard is for.
  auto add = [&](const std::vector<LabelledPair>& pairs, const char* prefix,
                 std::vector<SampleIntent>* out) {
    std::unordered_map<std::string, std::vector<uint32_t>> postings;  // word -> wordings
    std::vector<size_t> sizes;                                        // words per wording
    std::unordered_map<uint32_t, uint32_t> shared;
    auto similar = [&](const std::vector<std::string>& words) {
      shared.clear();
      for (const std::string& w : words) {
        auto it = postings.find(w);
        if (it == postings.end()) continue;
        for (uint32_t id : it->second) ++shared[id];
      }
      for (const auto& [id, n] : shared) {
        double jaccard = double(n) / double(words.size() + sizes[id] - n);
        if (jaccard >= 0.5) return true;
      }
      return false;
    };
    for (size_t i = 0; i < pairs.size(); ++i) {
      const LabelledPair& p = pairs[i];
      if (!p.same) continue;
      std::vector<std::string> a = ContentWords(p.first);
      std::vector<std::string> b = ContentWords(p.second);
      if (a.empty() || b.empty() || similar(a) || similar(b)) continue;
      for (const std::vector<std::string>* words : {&a, &b}) {
        uint32_t id = static_cast<uint32_t>(sizes.size());
        sizes.push_back(words->size());
        for (const std::string& w : *words) postings[w].push_back(id);
      }
      SampleIntent intent;
      intent.id = Numbered(prefix, i, 4);
      intent.wordings.push_back(p.first);
      if (Normalized(p.second) != Normalized(p.first)) intent.wordings.push_back(p.second);
      out->push_back(std::move(intent));
    }
  };
  add(*qqp_pairs, "search-", &data.search);
  add(*docs_pairs, "docs-", &data.docs);
  if (data.search.empty() || data.docs.empty()) {
    return Status(StatusCode::kInvalidArgument,
                  "sample data in '" + dir + "' holds no pairs marked as the same question");
  }
  return data;
}

std::string FindSampleDataDir(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("TOOLOPS_DATA_DIR"); env != nullptr && HasData(env)) {
    return env;
  }
  std::vector<std::string> candidates;
  std::error_code ec;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    // build/toolops -> the repository -> ../shared/data
    candidates.push_back((exe.parent_path().parent_path().parent_path() / "shared/data").string());
  }
  candidates.push_back("../shared/data");
  candidates.push_back("/work/shared/data");
  for (const std::string& c : candidates) {
    if (HasData(c)) return c;
  }
  return "";
}

Status ValidateSampleOptions(const SampleOptions& o) {
  auto bad = [](const std::string& m) { return Status(StatusCode::kInvalidArgument, m); };
  if (o.calls == 0) return bad("the sample needs at least one call");
  if (!(o.calls_per_second > 0 && o.calls_per_second <= 1e6)) {
    return bad("calls per second must be in (0, 1000000]");
  }
  if (!(o.zipf > 0 && o.zipf <= 4)) return bad("the Zipf exponent must be in (0, 4]");
  if (o.search_intents == 0 || o.docs_intents == 0 || o.customers == 0 || o.symbols == 0) {
    return bad("every tool needs at least one intent");
  }
  if (!(o.paraphrase_share >= 0 && o.paraphrase_share <= 1) ||
      !(o.burst_share >= 0 && o.burst_share <= 1)) {
    return bad("shares must be in [0, 1]");
  }
  if (!(o.outage_from >= 0 && o.outage_from <= o.outage_to && o.outage_to <= 1)) {
    return bad("the outage must satisfy 0 <= from <= to <= 1");
  }
  return Status();
}

Simulation SampleSimulation() {
  Simulation sim;
  for (const ToolShape& shape : kShapes) {
    ToolModel model;
    model.cost = shape.cost;
    model.latency_median = Duration(static_cast<int64_t>(shape.median_ms * kMs));
    model.latency_p95 = Duration(static_cast<int64_t>(shape.p95_ms * kMs));
    sim.tools[shape.name] = model;
  }
  return sim;
}

struct SampleGenerator::State {
  struct Conversation {
    uint64_t id = 0;
    int64_t next_ns = 0;
    int steps_left = 0;
    std::vector<std::string> agents;
    std::vector<size_t> topics[kTools];
  };
  struct Earlier {
    bool operator()(const Conversation* a, const Conversation* b) const {
      return a->next_ns != b->next_ns ? a->next_ns > b->next_ns : a->id > b->id;
    }
  };
  struct Pending {
    int64_t time_ns;
    uint64_t order;
    TraceCall call;
  };
  struct PendingLater {
    bool operator()(const Pending& a, const Pending& b) const {
      return a.time_ns != b.time_ns ? a.time_ns > b.time_ns : a.order > b.order;
    }
  };

  State(std::shared_ptr<const SampleData> d, SampleOptions o)
      : data(std::move(d)),
        options(o),
        rng(o.seed),
        sizes{std::min(o.search_intents, data->search.size()),
              std::min(o.docs_intents, data->docs.size()), o.customers, o.symbols} {
    // Which pairs become the intents: a seeded shuffle.
    for (int t = 0; t < 2; ++t) {
      const std::vector<SampleIntent>& all = t == 0 ? data->search : data->docs;
      std::vector<size_t> order(all.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.Next() % i]);
      order.resize(sizes[t]);
      chosen[t] = std::move(order);
    }
    for (int t = 0; t < kTools; ++t) zipf.emplace_back(sizes[t], o.zipf, rng);
    duration_ns = static_cast<int64_t>(static_cast<double>(o.calls) / o.calls_per_second * 1e9);
    // About 20 calls per conversation.
    conversation_gap_s = 20.0 / o.calls_per_second;
    next_arrival_ns = o.start_ns;
    for (const ToolShape& s : kShapes) cumulative_weight.push_back((total_weight += s.weight));
  }

  ~State() {
    while (!conversations.empty()) {
      delete conversations.top();
      conversations.pop();
    }
  }

  void StartConversation() {
    auto* c = new Conversation();
    c->id = ++conversation_count;
    c->next_ns = next_arrival_ns;
    c->steps_left = static_cast<int>(rng.Between(6, 30));
    size_t agents = rng.Between(3, 5);
    size_t first_role = rng.Next() % 5;
    for (size_t i = 0; i < agents; ++i) c->agents.push_back(kRoles[(first_role + i) % 5]);
    for (int t = 0; t < kTools; ++t) {
      int topics = t == kCrmLookup ? 1 : 2;
      for (int i = 0; i < topics; ++i) c->topics[t].push_back(zipf[t].Draw(rng));
    }
    conversations.push(c);
    next_arrival_ns += static_cast<int64_t>(rng.Exponential(conversation_gap_s) * 1e9);
  }

  TraceCall MakeCall(const Conversation& c, int tool, size_t item, const std::string& agent,
                     int64_t time_ns) {
    TraceCall call;
    call.time_ns = time_ns;
    call.conversation = Numbered("conv-", c.id, 6);
    call.agent = agent;
    call.tool = kShapes[tool].name;
    if (tool == kWebSearch || tool == kDocsSearch) {
      const SampleIntent& intent =
          (tool == kWebSearch ? data->search : data->docs)[chosen[tool][item]];
      size_t wording = 0;
      if (intent.wordings.size() > 1 && rng.Uniform() < options.paraphrase_share) {
        wording = 1 + rng.Next() % (intent.wordings.size() - 1);
      }
      call.intent = intent.id;
      if (tool == kWebSearch) {
        call.args = Value(Value::Map{{"query", Value(intent.wordings[wording])}});
      } else {
        call.args = Value(Value::Map{{"product", Value("platform")},
                                     {"question", Value(intent.wordings[wording])}});
      }
    } else if (tool == kCrmLookup) {
      std::string id = Numbered("C-", item, 5);
      call.intent = "customer-" + id;
      call.args = Value(Value::Map{{"customer_id", Value(id)}});
    } else {
      std::string symbol = Numbered("SYM", item, 3);
      call.intent = "quote-" + symbol;
      call.args = Value(Value::Map{{"symbol", Value(symbol)}});
    }
    const ToolShape& shape = kShapes[tool];
    call.cost = shape.cost;
    double sigma = std::log(shape.p95_ms / shape.median_ms) / 1.6448536;
    double ms = shape.median_ms * std::exp(sigma * rng.Normal());
    call.outcome = StatusCode::kOk;
    double position = static_cast<double>(time_ns - options.start_ns) / duration_ns;
    if (tool == kWebSearch && position >= options.outage_from && position < options.outage_to &&
        rng.Uniform() < 0.95) {
      call.outcome = StatusCode::kUnavailable;
      ms = 50 + 100 * rng.Uniform();  // Refused fast (HTTP 503).
    } else if (rng.Uniform() < 0.002) {
      call.outcome = StatusCode::kUnavailable;
    }
    call.latency = Duration(static_cast<int64_t>(std::min(ms, 60'000.0) * kMs));
    return call;
  }

  void Step(Conversation* c) {
    double u = rng.Uniform() * total_weight;
    int tool =
        static_cast<int>(std::lower_bound(cumulative_weight.begin(), cumulative_weight.end(), u) -
                         cumulative_weight.begin());
    tool = std::min(tool, kTools - 1);
    size_t item = rng.Uniform() < 0.5 ? c->topics[tool][rng.Next() % c->topics[tool].size()]
                                      : zipf[tool].Draw(rng);
    if (rng.Uniform() < options.burst_share) {
      // Several agents at once, within 40 ms.
      size_t k = rng.Between(2, c->agents.size());
      for (size_t i = 0; i < k; ++i) {
        int64_t at = c->next_ns + static_cast<int64_t>(rng.Next() % (40 * kMs));
        pending.push({at, ++order, MakeCall(*c, tool, item, c->agents[i], at)});
      }
    } else {
      const std::string& agent = c->agents[rng.Next() % c->agents.size()];
      pending.push({c->next_ns, ++order, MakeCall(*c, tool, item, agent, c->next_ns)});
    }
    if (--c->steps_left > 0) {
      c->next_ns += static_cast<int64_t>((0.5 + rng.Exponential(5.0)) * 1e9);
      conversations.push(c);
    } else {
      delete c;
    }
  }

  std::optional<TraceCall> Next() {
    if (emitted == options.calls) return std::nullopt;
    for (;;) {
      int64_t horizon = next_arrival_ns;
      if (!conversations.empty()) horizon = std::min(horizon, conversations.top()->next_ns);
      if (!pending.empty() && pending.top().time_ns <= horizon) {
        TraceCall call = pending.top().call;
        pending.pop();
        ++emitted;
        return call;
      }
      if (conversations.empty() || next_arrival_ns <= conversations.top()->next_ns) {
        StartConversation();
      } else {
        Conversation* c = conversations.top();
        conversations.pop();
        Step(c);
      }
    }
  }

  std::shared_ptr<const SampleData> data;
  SampleOptions options;
  Rng rng;
  size_t sizes[kTools];
  std::vector<size_t> chosen[2];
  std::vector<Zipf> zipf;
  std::vector<double> cumulative_weight;
  double total_weight = 0;
  int64_t duration_ns = 1;
  double conversation_gap_s = 1;
  int64_t next_arrival_ns = 0;
  uint64_t conversation_count = 0;
  uint64_t order = 0;
  uint64_t emitted = 0;
  std::priority_queue<Conversation*, std::vector<Conversation*>, Earlier> conversations;
  std::priority_queue<Pending, std::vector<Pending>, PendingLater> pending;
};

SampleGenerator::SampleGenerator(std::shared_ptr<const SampleData> data, SampleOptions options)
    : state_(std::make_unique<State>(std::move(data), options)) {}

SampleGenerator::~SampleGenerator() = default;

std::optional<TraceCall> SampleGenerator::Next() { return state_->Next(); }

}  // namespace toolops
