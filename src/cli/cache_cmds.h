// src/cli/cache_cmds.h
//
// The commands that work on the entries of configured shared stores:
//   toolops clear [STORE] [--tool T]    drop entries (all, or one tool's)
//   toolops invalidate --tag T          drop the entries of the tools tagged T
//   toolops inspect --tool T --args J   what is cached for one call
// Memory stores live inside each agent process and are out of their reach.

#ifndef TOOLOPS_CLI_CACHE_CMDS_H_
#define TOOLOPS_CLI_CACHE_CMDS_H_

#include <optional>
#include <string>
#include <vector>

#include "toolops/args.h"
#include "toolops/config.h"
#include "toolops/status.h"

namespace toolops::cli {

extern const char kClearUsage[];
extern const char kInvalidateUsage[];
extern const char kInspectUsage[];

int ClearMain(const std::vector<std::string>& args);
int InvalidateMain(const std::vector<std::string>& args);
int InspectMain(const std::vector<std::string>& args);

// The key prefixes a tool's entries may carry: with and without text
// normalisation (the prefix records it), for the tool's version.
std::vector<std::string> ToolPrefixes(const std::string& tool, const std::string& version);

// The version of `tool`: `given`, else [tools.T].version, else "1".
std::string ToolVersion(const Config& config, const std::string& tool,
                        const std::optional<std::string>& given);

// A call's parameters as the key sees them.
struct CallShape {
  std::string scope_param;                    // Empty: none.
  std::vector<std::string> sensitive_params;  // Never in the key.
  std::vector<std::string> key_params;        // Empty: every other parameter.
  TextNormalization normalization = TextNormalization::kNone;
};

// The full canonical key of a call of `tool` with `args_json` (a JSON object
// of the parameters in the tool's order, or a JSON array in that order), as
// the core builds it. InvalidArgument for JSON that is not such a value.
Result<std::string> CallKey(const std::string& tool, const std::string& version,
                            const std::string& args_json, const CallShape& shape);

}  // namespace toolops::cli

#endif  // TOOLOPS_CLI_CACHE_CMDS_H_
