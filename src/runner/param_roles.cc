// src/runner/param_roles.cc

#include <algorithm>

#include "toolops/tool.h"

namespace toolops::internal {

Result<std::vector<ParamRole>> ParamRoles(const ToolSpec& spec, const ToolPolicy& policy,
                                          size_t arity) {
  if (!spec.params.empty() && spec.params.size() != arity) {
    return Status(StatusCode::kInvalidArgument,
                  "tool '" + spec.name + "': ToolSpec::params names " +
                      std::to_string(spec.params.size()) + " parameters but the function takes " +
                      std::to_string(arity),
                  Guard::kPolicy);
  }
  std::vector<ParamRole> roles(arity, ParamRole::kKey);
  for (size_t i = 0; i < spec.params.size(); ++i) {
    const std::string& name = spec.params[i];
    auto named = [&](const std::vector<std::string>& list) {
      return std::find(list.begin(), list.end(), name) != list.end();
    };
    if (name == policy.scope_param) {
      roles[i] = ParamRole::kScope;
    } else if (named(policy.sensitive_params) ||
               (!policy.cache.key_params.empty() && !named(policy.cache.key_params))) {
      roles[i] = ParamRole::kSkip;
    }
  }
  return roles;
}

}  // namespace toolops::internal
