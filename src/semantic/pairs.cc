// src/semantic/pairs.cc

#include "semantic/pairs.h"

#include <fstream>

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

}  // namespace toolops
