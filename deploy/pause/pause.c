/* pause: the sandbox ("pause") process of a Sidelog pod, and an idle process for test pods.
 *
 * It holds the pod's namespaces open and does nothing else: it blocks until SIGTERM or SIGINT,
 * then exits 0. As PID 1 of a pod that shares its PID namespace, it reaps every child that is
 * re-parented to it, so no zombie outlives its process. Built static (gcc -static), so its image
 * needs no libraries:
 *
 *   gcc -static -Os -o pause deploy/pause/pause.c
 *
 *   pause        block until SIGTERM/SIGINT, exit 0
 *   pause -v     print the version and exit 0
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAUSE_VERSION "1.0"

static volatile sig_atomic_t stop_signal = 0;

static void on_stop(int sig) { stop_signal = sig; }

/* Reaps every exited child without blocking; errno is saved, as a handler must. */
static void on_child(int sig) {
  (void)sig;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

static int handle(int sig, void (*fn)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = sig == SIGCHLD ? SA_NOCLDSTOP | SA_RESTART : 0;
  return sigaction(sig, &sa, NULL);
}

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    printf("pause %s\n", PAUSE_VERSION);
    return 0;
  }
  if (argc > 1) {
    fprintf(stderr, "usage: pause [-v]\n");
    return 2;
  }
  if (handle(SIGTERM, on_stop) != 0 || handle(SIGINT, on_stop) != 0 ||
      handle(SIGCHLD, on_child) != 0) {
    perror("pause: sigaction");
    return 1;
  }
  if (getpid() != 1) {
    fprintf(stderr, "pause: not running as PID 1; zombies outside this process's children are not reaped\n");
  }

  /* Block every handled signal except while sigsuspend waits, so a signal that arrives between
   * the check and the wait is not lost. */
  sigset_t blocked, waiting;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGTERM);
  sigaddset(&blocked, SIGINT);
  sigaddset(&blocked, SIGCHLD);
  sigprocmask(SIG_BLOCK, &blocked, &waiting);
  sigdelset(&waiting, SIGTERM);
  sigdelset(&waiting, SIGINT);
  sigdelset(&waiting, SIGCHLD);
  while (!stop_signal) sigsuspend(&waiting);

  fprintf(stderr, "pause: got %s, exiting\n", strsignal(stop_signal));
  return 0;
}
