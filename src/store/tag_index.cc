// src/store/tag_index.cc
//
// A record's value: one line per tool, the tool prefix in lowercase hex
// (prefixes hold NUL bytes).

#include "store/tag_index.h"

#include <algorithm>

namespace toolops {
namespace {

constexpr auto kRecordLife = std::chrono::hours(24 * 30);

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

bool Unhex(std::string_view hex, std::string* out) {
  if (hex.size() % 2 != 0) return false;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  out->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = digit(hex[i]), lo = digit(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> lines;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    if (nl != 0) lines.emplace_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

}  // namespace

std::string TagRecordKey(std::string_view tag) {
  std::string key("\0toolops-tag\0", 13);
  key += tag;
  return key;
}

Status RecordToolTags(Store& store, std::string_view tool_prefix,
                      const std::vector<std::string>& tags, Clock* clock) {
  const std::string line = Hex(tool_prefix);
  for (const std::string& tag : tags) {
    const std::string key = TagRecordKey(tag);
    const KeyRef ref = KeyRef::Of(key);
    TimePoint now = clock->Now();
    std::vector<std::string> lines;
    if (std::optional<StoredValue> v = store.Get(ref, now)) lines = Lines(v->value.view());
    bool known = std::find(lines.begin(), lines.end(), line) != lines.end();
    if (!known && lines.size() >= kMaxToolsPerTag) continue;
    if (!known) lines.push_back(line);
    std::string text;
    for (const std::string& l : lines) text += l + "\n";
    Status s =
        store.Put(ref, StoredValue{Bytes::Copy(text), now + kRecordLife, now + kRecordLife}, now);
    if (!s.ok()) return s;
  }
  return Status();
}

CallTagIndex* CallTagIndexOf(Store& store) { return dynamic_cast<CallTagIndex*>(&store); }

std::string CallTagPrefix(std::string_view tag) {
  std::string prefix("toolops.tag\0", 12);
  prefix += tag;
  prefix.push_back('\0');
  return prefix;
}

Status CheckTag(std::string_view tag) {
  if (tag.empty()) return Status(StatusCode::kInvalidArgument, "a cache tag must not be empty");
  if (tag.find('\0') != std::string_view::npos) {
    return Status(StatusCode::kInvalidArgument, "a cache tag must not hold a NUL byte");
  }
  return Status();
}

std::vector<std::string> TaggedToolPrefixes(Store& store, std::string_view tag, Clock* clock) {
  std::vector<std::string> prefixes;
  const std::string key = TagRecordKey(tag);
  std::optional<StoredValue> v = store.Get(KeyRef::Of(key), clock->Now());
  if (!v) return prefixes;
  for (const std::string& line : Lines(v->value.view())) {
    std::string prefix;
    if (Unhex(line, &prefix)) prefixes.push_back(std::move(prefix));
  }
  return prefixes;
}

}  // namespace toolops
