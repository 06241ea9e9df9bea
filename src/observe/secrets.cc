// src/observe/secrets.cc

#include "toolops/secrets.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <vector>

namespace toolops {
namespace {

constexpr std::array<std::string_view, 22> kSecretWords = {
    "password",     "passwd",        "pwd",       "passphrase", "secret",     "token",
    "auth",         "authorization", "cookie",    "session",    "credential", "credentials",
    "bearer",       "jwt",           "apikey",    "privatekey", "accesskey",  "secretkey",
    "clientsecret", "sessionid",     "signature", "otp"};

bool IsSecretWord(std::string_view word) {
  return std::find(kSecretWords.begin(), kSecretWords.end(), word) != kSecretWords.end();
}

bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// The lower-case words of a name.
std::vector<std::string> Words(std::string_view name) {
  std::vector<std::string> words;
  std::string current;
  char previous = 0;
  for (char c : name) {
    if (!IsAlnum(c)) {
      if (!current.empty()) words.push_back(std::move(current));
      current.clear();
    } else {
      bool upper = std::isupper(static_cast<unsigned char>(c)) != 0;
      bool previous_lower = std::islower(static_cast<unsigned char>(previous)) != 0;
      if (upper && previous_lower && !current.empty()) {
        words.push_back(std::move(current));
        current.clear();
      }
      current.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    previous = c;
  }
  if (!current.empty()) words.push_back(std::move(current));
  return words;
}

}  // namespace

bool LooksLikeSecretName(std::string_view name) {
  std::vector<std::string> words = Words(name);
  for (size_t i = 0; i < words.size(); ++i) {
    if (IsSecretWord(words[i])) return true;
    if (i + 1 < words.size() && IsSecretWord(words[i] + words[i + 1])) return true;
  }
  return false;
}

std::string MaskSecretsInText(std::string_view text) {
  // Scans for name <sep> value, where name is a run of name characters
  // (letters, digits, _ - .), optionally quoted, and sep is '=' or ':'.
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  auto name_char = [](char c) { return IsAlnum(c) || c == '_' || c == '-' || c == '.'; };
  while (i < text.size()) {
    if (!name_char(text[i]) || (i > 0 && name_char(text[i - 1]))) {
      out.push_back(text[i++]);
      continue;
    }
    size_t start = i;
    while (i < text.size() && name_char(text[i])) ++i;
    std::string_view name = text.substr(start, i - start);
    out.append(name);
    size_t j = i;
    if (j < text.size() && text[j] == '"') ++j;  // The closing quote of a JSON key.
    while (j < text.size() && text[j] == ' ') ++j;
    if (j >= text.size() || (text[j] != '=' && text[j] != ':') || !LooksLikeSecretName(name)) {
      continue;
    }
    ++j;
    while (j < text.size() && text[j] == ' ') ++j;
    out.append(text.substr(i, j - i));
    // The value: quoted, or up to a separator. A scheme word (Bearer, Basic)
    // is kept and the credential after it masked.
    size_t v = j;
    if (v < text.size() && (text[v] == '"' || text[v] == '\'')) {
      char quote = text[v];
      size_t end = v + 1;
      while (end < text.size() && text[end] != quote) {
        if (text[end] == '\\' && end + 1 < text.size()) ++end;
        ++end;
      }
      out.push_back(quote);
      out.append(kMaskedValue);
      if (end < text.size()) out.push_back(quote);
      i = std::min(end + 1, text.size());
      continue;
    }
    size_t end = v;
    while (end < text.size() && text[end] != ' ' && text[end] != ',' && text[end] != ';' &&
           text[end] != '&' && text[end] != '}' && text[end] != ')' && text[end] != '\n') {
      ++end;
    }
    std::string_view value = text.substr(v, end - v);
    std::string lower(value);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if ((lower == "bearer" || lower == "basic") && end < text.size() && text[end] == ' ') {
      out.append(value);
      out.push_back(' ');
      size_t cred_end = end + 1;
      while (cred_end < text.size() && text[cred_end] != ' ' && text[cred_end] != ',' &&
             text[cred_end] != ';' && text[cred_end] != '\n' && text[cred_end] != '"') {
        ++cred_end;
      }
      out.append(kMaskedValue);
      i = cred_end;
      continue;
    }
    if (!value.empty()) out.append(kMaskedValue);
    i = end;
  }
  return out;
}

}  // namespace toolops
