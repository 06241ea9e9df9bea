// src/cli/cli_common.cc

#include "cli/cli_common.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "toolops/tool_core.h"

namespace toolops::cli {

int UsageError(const std::string& message, const char* usage) {
  std::fprintf(stderr, "toolops: %s\n\n%s", message.c_str(), usage);
  return kExitUsage;
}

int Fail(const std::string& message, int code) {
  std::fprintf(stderr, "toolops: %s\n", message.c_str());
  return code;
}

Options::Options(std::vector<std::string> flags, std::vector<std::string> valued,
                 std::vector<std::string> optional_valued)
    : flags_(std::move(flags)),
      valued_(std::move(valued)),
      optional_valued_(std::move(optional_valued)) {}

std::string Options::Parse(const std::vector<std::string>& args) {
  auto listed = [](const std::vector<std::string>& list, const std::string& name) {
    return std::find(list.begin(), list.end(), name) != list.end();
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positional_.insert(positional_.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg;
    std::optional<std::string> inline_value;
    if (size_t eq = arg.find('='); eq != std::string::npos && arg.rfind("--", 0) == 0) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    if (listed(flags_, name)) {
      if (inline_value) return name + " takes no value";
      given_.emplace_back(name, "");
    } else if (listed(valued_, name)) {
      if (inline_value) {
        given_.emplace_back(name, *inline_value);
      } else if (i + 1 < args.size()) {
        given_.emplace_back(name, args[++i]);
      } else {
        return name + " needs a value";
      }
    } else if (listed(optional_valued_, name)) {
      if (inline_value) {
        given_.emplace_back(name, *inline_value);
      } else if (i + 1 < args.size() && !args[i + 1].empty() && args[i + 1][0] != '-') {
        given_.emplace_back(name, args[++i]);
      } else {
        given_.emplace_back(name, "");
      }
    } else {
      return "unknown option '" + name + "'";
    }
  }
  return "";
}

bool Options::Has(std::string_view name) const {
  return std::any_of(given_.begin(), given_.end(), [&](const auto& g) { return g.first == name; });
}

std::optional<std::string> Options::Get(std::string_view name) const {
  std::optional<std::string> out;
  for (const auto& [n, v] : given_) {
    if (n == name) out = v;
  }
  return out;
}

std::vector<std::string> Options::All(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [n, v] : given_) {
    if (n == name) out.push_back(v);
  }
  return out;
}

bool UseColour(FILE* stream) {
  if (std::getenv("NO_COLOR") != nullptr) return false;
  const char* term = std::getenv("TERM");
  if (term != nullptr && std::strcmp(term, "dumb") == 0) return false;
  return isatty(fileno(stream)) == 1;
}

std::string Paint(std::string_view text, Colour colour, bool on) {
  if (!on || colour == Colour::kNone) return std::string(text);
  const char* code = "";
  switch (colour) {
    case Colour::kGreen:
      code = "\x1b[32m";
      break;
    case Colour::kYellow:
      code = "\x1b[33m";
      break;
    case Colour::kRed:
      code = "\x1b[1;31m";
      break;
    case Colour::kBold:
      code = "\x1b[1m";
      break;
    case Colour::kDim:
      code = "\x1b[2m";
      break;
    case Colour::kNone:
      break;
  }
  return std::string(code) + std::string(text) + "\x1b[0m";
}

namespace {

// Display width: bytes that are not escape sequences and not UTF-8
// continuation bytes.
size_t Width(std::string_view text) {
  size_t width = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\x1b') {
      while (i < text.size() && text[i] != 'm') ++i;
      continue;
    }
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) ++width;
  }
  return width;
}

}  // namespace

std::string Table::Render(const std::vector<size_t>& right) const {
  std::vector<size_t> widths(header_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) {
      widths[c] = std::max(widths[c], Width(row[c]));
    }
  };
  measure(header_);
  for (const auto& row : rows_) measure(row);
  auto line = [&](const std::vector<std::string>& row) {
    std::string out;
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) {
      bool is_last = c + 1 == row.size();
      std::string pad(widths[c] - Width(row[c]), ' ');
      bool align_right = std::find(right.begin(), right.end(), c) != right.end();
      if (align_right) {
        out += pad + row[c];
      } else {
        out += row[c];
        if (!is_last) out += pad;
      }
      if (!is_last) out += "  ";
    }
    return out + "\n";
  };
  std::string out = line(header_);
  for (const auto& row : rows_) out += line(row);
  return out;
}

std::string FormatSeconds(double seconds) {
  char buffer[32];
  if (seconds < 0.001) {
    std::snprintf(buffer, sizeof(buffer), "%.2fms", seconds * 1e3);
  } else if (seconds < 1) {
    std::snprintf(buffer, sizeof(buffer), "%.1fms", seconds * 1e3);
  } else {
    std::snprintf(buffer, sizeof(buffer), "%.2fs", seconds);
  }
  return buffer;
}

Result<Config> LoadCliConfig(const std::optional<std::string>& path) {
  Result<Config> config = LoadConfig(path.value_or(""));
  if (!config.ok()) return config;
  // The command's own log lines (a store down) follow [telemetry]; the
  // endpoints, tracing and publishing belong to the agents, not to it.
  TelemetryParts parts;
  parts.tracing = parts.metrics_endpoint = parts.stats_publisher = false;
  if (Status s = ApplyTelemetry(*config, parts); !s.ok()) return s;
  return config;
}

std::string ToolKeyPrefix(const std::string& name, const std::string& version, bool normalized) {
  // The core's own prefix, from a tool core built with the same identity.
  StoreRegistry registry;
  registry.Register("memory", std::shared_ptr<Store>(NewMemoryStore({}).value()));
  Environment env;
  env.stores = &registry;
  ToolPolicy policy;
  policy.breaker.enabled = false;
  policy.cache.normalization = normalized ? TextNormalization::kNfc : TextNormalization::kNone;
  Result<std::shared_ptr<ToolCore>> core = ToolCore::Create(ToolSpec(name, version), policy, env);
  if (!core.ok()) return "";
  return (*core)->key_prefix();
}

Result<std::vector<const StoreConfig*>> SelectStores(const Config& config,
                                                     const std::optional<std::string>& only) {
  std::vector<const StoreConfig*> out;
  if (only) {
    auto it = config.stores.find(*only);
    if (it == config.stores.end()) {
      std::string known;
      for (const auto& [name, store] : config.stores) known += (known.empty() ? "" : ", ") + name;
      return Status(StatusCode::kNotFound,
                    "no store '" + *only + "' in the configuration" +
                        (config.path.empty() ? " (no configuration file was found)"
                                             : " (" + config.path + ")") +
                        (known.empty() ? "" : "; configured: " + known),
                    Guard::kPolicy);
    }
    out.push_back(&it->second);
    return out;
  }
  for (const auto& [name, store] : config.stores) out.push_back(&store);
  return out;
}

}  // namespace toolops::cli
