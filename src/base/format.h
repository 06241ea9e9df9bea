// src/base/format.h
//
// Small helpers shared by the messages of errors and rejections, so that every
// guard writes durations the same way. Thread-safe (pure functions).

#ifndef TOOLOPS_BASE_FORMAT_H_
#define TOOLOPS_BASE_FORMAT_H_

#include <string>

#include "toolops/clock.h"

namespace toolops {

// "250ms", "1.5s", "30s", "-2s": milliseconds below one second, else seconds
// with at most one decimal.
std::string FormatDuration(Duration d);

}  // namespace toolops

#endif  // TOOLOPS_BASE_FORMAT_H_
