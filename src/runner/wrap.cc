// src/runner/wrap.cc
//
// The non-template part of wrapping a tool: the roles of its parameters in
// the key and the validated core, shared by the blocking and async wrappers.

#include <algorithm>

#include "toolops/config.h"
#include "toolops/secrets.h"
#include "toolops/tool.h"

namespace toolops::internal {
namespace {

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
               (!policy.cache.key_params.empty() && !named(policy.cache.key_params)) ||
               (policy.cache.key_params.empty() && LooksLikeSecretName(name))) {
      // A secret-looking name (api_key, token, ...) is left out of the key
      // like a declared sensitive one, unless key_params names it.
      roles[i] = ParamRole::kSkip;
    } else if (named(policy.cache.semantic.params)) {
      roles[i] = ParamRole::kSemantic;
    }
  }
  return roles;
}

}  // namespace

Result<WrappedCore> WrapCore(ToolSpec spec, ToolPolicy policy, size_t arity, Environment env) {
  // The configuration file's fields for this tool win over the code's.
  std::shared_ptr<const Config> config = AppliedConfig();
  const ToolConfig* configured = config ? config->FindTool(spec.name) : nullptr;
  if (configured != nullptr) {
    configured->ApplyTo(&policy);
    if (policy.kind == ToolKind::kSideEffect) policy = AsSideEffect(std::move(policy));
  }
  auto blamed = [&](const Status& s) {
    if (configured == nullptr || s.ok()) return s;
    return Status(s.code(), std::string(s.message()) + configured->Blame(s.message()), s.guard());
  };
  Result<std::vector<ParamRole>> roles = ParamRoles(spec, policy, arity);
  if (!roles.ok()) return blamed(roles.status());
  Result<std::shared_ptr<ToolCore>> core =
      ToolCore::Create(std::move(spec), std::move(policy), env);
  if (!core.ok()) return blamed(core.status());
  return WrappedCore{std::move(core).value(), std::move(roles).value()};
}

ToolPolicy AsReadonly(ToolPolicy policy) {
  policy.kind = ToolKind::kReadonly;
  return policy;
}

ToolPolicy AsSideEffect(ToolPolicy policy) {
  policy.kind = ToolKind::kSideEffect;
  policy.cache.enabled = false;
  policy.coalesce.enabled = false;
  return policy;
}

}  // namespace toolops::internal
