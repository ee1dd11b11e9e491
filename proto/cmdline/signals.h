// Signal handling shared by Cairn's server executables.
#ifndef CAIRN_PROTO_CMDLINE_SIGNALS_H_
#define CAIRN_PROTO_CMDLINE_SIGNALS_H_

namespace cairn {
namespace cmdline {

// Blocks SIGTERM and SIGINT in the calling thread (and the threads it starts
// afterwards). Call first thing in main().
void BlockTerminationSignals();
// Waits until SIGTERM or SIGINT arrives; returns the signal number.
// REQUIRES: BlockTerminationSignals() was called.
int WaitForTerminationSignal();
// Like WaitForTerminationSignal, for at most `timeout_ms`; 0 if none came.
int PollTerminationSignal(int timeout_ms);

}  // namespace cmdline
}  // namespace cairn

#endif  // CAIRN_PROTO_CMDLINE_SIGNALS_H_
