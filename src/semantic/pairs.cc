// src/semantic/pairs.cc

#include "semantic/pairs.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace toolops {
namespace {

std::vector<std::string> CsvFields(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back().push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back().push_back(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else {
      fields.back().push_back(c);
    }
  }
  return fields;
}

}  // namespace

Result<std::vector<LabelledPair>> ReadPairsCsv(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return Status(StatusCode::kNotFound, "pairs file '" + path + "' cannot be opened",
                  Guard::kCodec);
  }
  std::vector<LabelledPair> pairs;
  std::string line;
  std::getline(in, line);  // Header.
  for (size_t number = 2; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::vector<std::string> f = CsvFields(line);
    if (f.size() < 3) {
      return Status(StatusCode::kInvalidArgument,
                    "pairs file '" + path + "' line " + std::to_string(number) +
                        ": expected question1,question2,label",
                    Guard::kCodec);
    }
    pairs.push_back(LabelledPair{f[0], f[1], f[2] == "1"});
  }
  return pairs;
}

Result<std::vector<LabelledPair>> ReadPairsJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status(StatusCode::kNotFound, "pairs file '" + path + "' cannot be opened",
                  Guard::kCodec);
  }
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json doc = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_array()) {
    return Status(StatusCode::kInvalidArgument,
                  "pairs file '" + path +
                      "' is not a JSON array of {\"origin\": ..., \"similar\": ...} objects",
                  Guard::kCodec);
  }
  std::vector<LabelledPair> pairs;
  for (size_t i = 0; i < doc.size(); ++i) {
    const nlohmann::json& item = doc[i];
    if (!item.is_object() || !item.contains("origin") || !item.contains("similar") ||
        !item["origin"].is_string() || !item["similar"].is_string()) {
      return Status(StatusCode::kInvalidArgument,
                    "pairs file '" + path + "': element " + std::to_string(i) +
                        " lacks the strings \"origin\" and \"similar\"",
                    Guard::kCodec);
    }
    pairs.push_back(LabelledPair{item["origin"].get<std::string>(),
                                 item["similar"].get<std::string>(), /*same=*/true});
  }
  return pairs;
}

Result<std::vector<LabelledPair>> ReadPairs(const std::string& path) {
  bool json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  return json ? ReadPairsJson(path) : ReadPairsCsv(path);
}

}  // namespace toolops
