// src/cli/cli_common.h
//
// What the `toolops` subcommands share: exit codes, option parsing, colour on
// terminals, tables, loading the configuration and opening its stores, and
// the key prefix of a tool. Pure helpers; safe to call from any thread unless
// a comment says otherwise.

#ifndef TOOLOPS_CLI_CLI_COMMON_H_
#define TOOLOPS_CLI_CLI_COMMON_H_

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "toolops/config.h"
#include "toolops/policy.h"
#include "toolops/status.h"
#include "toolops/store.h"

namespace toolops::cli {

// Exit codes of every command.
inline constexpr int kExitOk = 0;      // Done; healthy.
inline constexpr int kExitFailed = 1;  // A check or the target failed.
inline constexpr int kExitUsage = 2;   // Bad usage, or input that cannot be read.

// Prints "toolops: <message>" and the usage to stderr; returns kExitUsage.
int UsageError(const std::string& message, const char* usage);
// Prints "toolops: <message>" to stderr; returns `code`.
int Fail(const std::string& message, int code = kExitFailed);

// A small option parser: flags (--json), options with a value (--tool T,
// also --tool=T) and positional arguments. Unknown options are errors.
class Options {
 public:
  // `flags` take no value; `valued` take one. `optional_valued` may take one
  // (the next argument when it does not start with '-').
  Options(std::vector<std::string> flags, std::vector<std::string> valued,
          std::vector<std::string> optional_valued = {});
  // Parses `args`; an error message, or empty.
  std::string Parse(const std::vector<std::string>& args);

  bool Has(std::string_view name) const;
  // The last value given, if any.
  std::optional<std::string> Get(std::string_view name) const;
  // Every value given (repeated options).
  std::vector<std::string> All(std::string_view name) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::vector<std::string> flags_, valued_, optional_valued_;
  std::vector<std::pair<std::string, std::string>> given_;
  std::vector<std::string> positional_;
};

// Whether to colour output written to `stream`: a terminal, and NO_COLOR not
// set (any value), and TERM not "dumb".
bool UseColour(FILE* stream);

enum class Colour { kNone, kGreen, kYellow, kRed, kBold, kDim };
// `text` wrapped in the colour's escape codes when `on`.
std::string Paint(std::string_view text, Colour colour, bool on);

// A text table: columns padded to their widest cell (colour codes do not
// count). Cells may hold escape codes.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // `right` lists the columns aligned right (numbers).
  std::string Render(const std::vector<size_t>& right = {}) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// "0.8ms", "12ms", "1.25s".
std::string FormatSeconds(double seconds);

// The configuration the commands use: `path` (from --config) or the default
// search (LoadConfig("")). Applies its logging fields (ApplyTelemetry's
// logging part) to the command's own log lines.
Result<Config> LoadCliConfig(const std::optional<std::string>& path);

// The bytes every key of a tool starts with, as the core builds it. `normalized`:
// whether the tool's policy normalises text (the prefix names the Unicode
// version then).
std::string ToolKeyPrefix(const std::string& name, const std::string& version, bool normalized);

// The stores a command works on: the one named `only` (NotFound naming the
// configured ones when it is not configured), or every configured store.
Result<std::vector<const StoreConfig*>> SelectStores(const Config& config,
                                                     const std::optional<std::string>& only);

}  // namespace toolops::cli

#endif  // TOOLOPS_CLI_CLI_COMMON_H_
