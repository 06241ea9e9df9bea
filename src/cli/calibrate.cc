// src/cli/calibrate.cc

#include "cli/calibrate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "toolops/policy.h"

namespace toolops {
namespace {

bool InUnitRange(double v) { return v > 0 && v <= 1 && std::isfinite(v); }

Status OutOfRange(const char* name, double value, const char* range) {
  return Status(
      StatusCode::kInvalidArgument,
      std::string("calibrate: ") + name + " is " + std::to_string(value) + "; it must be " + range,
      Guard::kPolicy);
}

std::string Percent(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%5.1f%%", 100 * v);
  return buf;
}

nlohmann::json PointJson(const ProtocolPoint& p) {
  return {{"threshold", p.threshold},
          {"hits", p.hits},
          {"correct", p.correct},
          {"wrong", p.hits - p.correct},
          {"wrong_identical_text", p.identical},
          {"precision", p.precision()},
          {"precision_identical_right", p.precision_identical_right()},
          {"recall", p.recall()}};
}

}  // namespace

Status ValidateCalibrateOptions(const CalibrateOptions& o) {
  if (!InUnitRange(o.precision)) return OutOfRange("--precision", o.precision, "in (0, 1]");
  if (!InUnitRange(o.from)) return OutOfRange("--from", o.from, "in (0, 1]");
  if (!InUnitRange(o.to) || o.to < o.from) {
    return OutOfRange("--to", o.to, "in (0, 1] and at least --from");
  }
  if (!(o.step >= 0.001 && o.step <= 0.5)) return OutOfRange("--step", o.step, "in [0.001, 0.5]");
  if (o.candidates < 1 || o.candidates > 64) {
    return OutOfRange("--candidates", static_cast<double>(o.candidates), "between 1 and 64");
  }
  return Status();
}

std::optional<ProtocolPoint> ChooseThreshold(const std::vector<ProtocolPoint>& curve,
                                             double precision) {
  std::optional<ProtocolPoint> best;
  for (const ProtocolPoint& p : curve) {
    if (p.hits == 0 || p.precision() < precision) continue;
    if (!best || p.recall() > best->recall()) best = p;
  }
  return best;
}

Result<Calibration> Calibrate(const std::vector<LabelledPair>& pairs, const Embedder& embedder,
                              const CalibrateOptions& options) {
  if (Status s = ValidateCalibrateOptions(options); !s.ok()) return s;
  if (pairs.empty()) {
    return Status(StatusCode::kInvalidArgument, "calibrate: the pairs file holds no pair",
                  Guard::kPolicy);
  }
  std::vector<double> thresholds;
  int steps = static_cast<int>(std::floor((options.to - options.from) / options.step + 1e-9));
  for (int i = 0; i <= steps; ++i) {
    // Rounded to 1e-6 so that printed thresholds are the ones swept.
    thresholds.push_back(std::round((options.from + i * options.step) * 1e6) / 1e6);
  }
  Calibration c;
  c.pairs = pairs.size();
  for (const LabelledPair& p : pairs) c.same_pairs += p.same;
  c.plain = EvaluateCacheProtocol(pairs, embedder, thresholds, /*guard=*/false, options.candidates);
  std::vector<WrongHit> wrong;
  std::vector<double> micros;
  c.guarded = EvaluateCacheProtocol(pairs, embedder, thresholds, /*guard=*/true, options.candidates,
                                    options.show_wrong > 0 ? &wrong : nullptr, &micros);
  if (!micros.empty()) {
    std::sort(micros.begin(), micros.end());
    c.lookup_p50_us = micros[micros.size() / 2];
    c.lookup_p99_us = micros[std::min(micros.size() - 1, micros.size() * 99 / 100)];
  }
  std::erase_if(wrong, [](const WrongHit& w) { return w.identical; });
  std::sort(wrong.begin(), wrong.end(),
            [](const WrongHit& a, const WrongHit& b) { return a.similarity > b.similarity; });
  if (wrong.size() > options.show_wrong) wrong.resize(options.show_wrong);
  for (const WrongHit& w : wrong) {
    c.wrong.push_back(
        WrongExample{pairs[w.pair].second, pairs[w.entry].first, w.similarity, w.pair == w.entry});
  }
  c.plain_choice = ChooseThreshold(c.plain, options.precision);
  c.guarded_choice = ChooseThreshold(c.guarded, options.precision);
  return c;
}

std::string FormatCalibrationTable(const Calibration& c, const CalibrateOptions& options) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof(line),
                "%zu pairs, %zu asking the same thing. Cache protocol: every first question is "
                "stored\nwith its own answer, every second question is looked up.\n\n",
                c.pairs, c.same_pairs);
  out += line;
  out += "          |        threshold only                |    threshold + match guard\n";
  out +=
      "threshold |  hits  wrong (same text) precision recall |  hits  wrong (same text) "
      "precision recall\n";
  for (size_t i = 0; i < c.plain.size(); ++i) {
    const ProtocolPoint& p = c.plain[i];
    const ProtocolPoint& g = c.guarded[i];
    std::snprintf(line, sizeof(line),
                  "  %.3f   | %5zu  %5zu  (%5zu)     %s  %s | %5zu  %5zu  (%5zu)     %s  %s\n",
                  p.threshold, p.hits, p.hits - p.correct, p.identical,
                  Percent(p.precision()).c_str(), Percent(p.recall()).c_str(), g.hits,
                  g.hits - g.correct, g.identical, Percent(g.precision()).c_str(),
                  Percent(g.recall()).c_str());
    out += line;
  }
  out +=
      "\n(same text: wrong hits on another pair's entry holding the very question looked up,\n"
      "or the lookup's own first question; the file stores some questions under several\n"
      "pairs. They count as wrong here, as the protocol says.)\n";
  auto choice = [&](const char* label, const std::optional<ProtocolPoint>& p) {
    if (p) {
      std::snprintf(line, sizeof(line), "%s: threshold %.3f (precision %s, recall %s)\n", label,
                    p->threshold, Percent(p->precision()).c_str(), Percent(p->recall()).c_str());
    } else {
      std::snprintf(line, sizeof(line), "%s: no threshold in %.3f..%.3f reaches it\n", label,
                    options.from, options.to);
    }
    out += line;
  };
  std::snprintf(line, sizeof(line), "\nFor served-hit precision >= %s:\n",
                Percent(options.precision).c_str());
  out += line;
  choice("  with the match guard (SemanticPolicy::guard = true)", c.guarded_choice);
  choice("  threshold only                                    ", c.plain_choice);
  if (!c.wrong.empty()) {
    out += "\nThe most similar wrong hits the guard let through:\n";
    for (const WrongExample& w : c.wrong) {
      std::snprintf(line, sizeof(line), "  %.3f%s\n", w.similarity,
                    w.same_pair ? "  (its own pair, labelled not the same)" : "");
      out += line;
      out += "    asked:  " + w.asked + "\n    stored: " + w.stored + "\n";
    }
  }
  return out;
}

std::string FormatCalibrationJson(const Calibration& c, const CalibrateOptions& options) {
  nlohmann::json doc;
  doc["pairs"] = c.pairs;
  doc["same_pairs"] = c.same_pairs;
  doc["precision_target"] = options.precision;
  doc["candidates"] = options.candidates;
  // What SemanticCache() uses when nothing is set, to read the curve there.
  SemanticPolicy defaults;
  doc["defaults"] = {{"threshold", defaults.threshold},
                     {"guard", defaults.guard},
                     {"candidates", defaults.candidates}};
  doc["lookup_us"] = {{"p50", c.lookup_p50_us}, {"p99", c.lookup_p99_us}};
  for (const auto& [name, curve, chosen] : {std::tuple{"plain", &c.plain, &c.plain_choice},
                                            std::tuple{"guarded", &c.guarded, &c.guarded_choice}}) {
    nlohmann::json points = nlohmann::json::array();
    for (const ProtocolPoint& p : *curve) points.push_back(PointJson(p));
    doc[name]["curve"] = points;
    doc[name]["choice"] = *chosen ? PointJson(**chosen) : nlohmann::json(nullptr);
  }
  nlohmann::json wrong = nlohmann::json::array();
  for (const WrongExample& w : c.wrong) {
    wrong.push_back({{"asked", w.asked},
                     {"stored", w.stored},
                     {"similarity", w.similarity},
                     {"own_pair", w.same_pair}});
  }
  doc["guarded"]["wrong_examples"] = wrong;
  return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace toolops
