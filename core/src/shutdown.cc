#include "sidelog/shutdown.h"

#include <signal.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "sidelog/log.h"

namespace sidelog {
namespace {

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

void BlockShutdownSignals() {
  sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int WaitForShutdownSignal() {
  sigset_t set = ShutdownSignals();
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

bool ShutdownSignalPending() {
  sigset_t pending;
  sigpending(&pending);
  return sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1;
}

void ExitIfShutdownTakesLonger(std::chrono::seconds limit) {
  std::thread([limit] {
    std::this_thread::sleep_for(limit);
    log::Error("shutdown took longer than " + std::to_string(limit.count()) + " s; exiting");
    std::_Exit(1);
  }).detach();
}

}  // namespace sidelog
