// src/observe/registry.h
//
// The process-wide registry of live ToolCores, read by the metrics
// exporters. Only creation and destruction of a tool touch it; calls never
// do.

#ifndef TOOLOPS_OBSERVE_REGISTRY_H_
#define TOOLOPS_OBSERVE_REGISTRY_H_

#include <memory>

namespace toolops {
class ToolCore;
namespace internal {

void RegisterTool(const std::shared_ptr<ToolCore>& core);
// From ~ToolCore. REQUIRES: the caller holds no registry enumeration.
void UnregisterTool(const ToolCore* core);

}  // namespace internal
}  // namespace toolops

#endif  // TOOLOPS_OBSERVE_REGISTRY_H_
