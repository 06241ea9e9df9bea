// src/base/format.cc

#include "base/format.h"

#include <cstdio>

namespace toolops {

std::string FormatDuration(Duration d) {
  if (d < Duration::zero()) return "-" + FormatDuration(-d);
  if (d < std::chrono::seconds(1)) {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + "ms";
  }
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.1f", std::chrono::duration<double>(d).count());
  std::string text(buffer);
  if (text.size() > 2 && text.compare(text.size() - 2, 2, ".0") == 0) text.resize(text.size() - 2);
  return text + "s";
}

}  // namespace toolops
