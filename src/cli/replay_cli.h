// src/cli/replay_cli.h
//
// `toolops replay` and `toolops sample-trace`: argument parsing, the progress
// bar and output files. The work is in src/replay/.
// Exit codes: 0 done, 1 the replay failed, 2 bad usage or unreadable input.

#ifndef TOOLOPS_CLI_REPLAY_CLI_H_
#define TOOLOPS_CLI_REPLAY_CLI_H_

#include <string>
#include <vector>

namespace toolops {

extern const char kReplayUsage[];
extern const char kSampleTraceUsage[];

// `args` are the arguments after the command's name.
int ReplayCommand(const std::vector<std::string>& args);
int SampleTraceCommand(const std::vector<std::string>& args);

}  // namespace toolops

#endif  // TOOLOPS_CLI_REPLAY_CLI_H_
