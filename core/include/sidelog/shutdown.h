// Process shutdown, the same in every Sidelog program. SIGTERM and SIGINT are blocked in every
// thread and taken by one sigwait, so no pool thread is ever interrupted; SIGPIPE is ignored (a
// closed socket is an error value, not a death). Draining is bounded by a watchdog.
#pragma once

#include <chrono>

namespace sidelog {

// Call before starting any thread: threads inherit the mask.
void BlockShutdownSignals();

// Waits for SIGTERM or SIGINT (BlockShutdownSignals first); returns the signal number.
int WaitForShutdownSignal();

// Whether SIGTERM or SIGINT waits to be taken by WaitForShutdownSignal (for long startup work
// that should give up when the process is asked to stop).
bool ShutdownSignalPending();

// Ends the process with status 1 (logging why) if it still runs `limit` from now.
void ExitIfShutdownTakesLonger(std::chrono::seconds limit);

}  // namespace sidelog
