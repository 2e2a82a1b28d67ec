// A real nats-server with JetStream for integration tests: a free loopback port, a store in a
// temporary directory, started and killed by the test. `NATS_SERVER` overrides the binary
// (e.g. a current release built into .cache/tools); the default is Debian's nats-server.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "sidecar_process.h"

namespace sidelog::testing {

class NatsServer {
 public:
  NatsServer() {
    char tmpl[] = "/tmp/sidelog-nats.XXXXXX";
    dir_ = mkdtemp(tmpl);
    port_ = FreePort();
  }
  ~NatsServer() {
    Kill(SIGKILL);
    std::filesystem::remove_all(dir_);
  }

  void Start() {
    const char* bin = std::getenv("NATS_SERVER");
    std::string server = bin && *bin ? bin : "nats-server";
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test, even when it is killed
      freopen((dir_ + "/nats.log").c_str(), "a", stderr);
      freopen((dir_ + "/nats.log").c_str(), "a", stdout);
      execlp(server.c_str(), server.c_str(), "-js", "-sd", (dir_ + "/js").c_str(), "-a",
             "127.0.0.1", "-p", std::to_string(port_).c_str(), nullptr);
      _exit(127);
    }
    // Ready when the port accepts connections.
    for (int i = 0; i < 200; ++i) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(port_));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      bool up = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
      close(fd);
      if (up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // JetStream comes up last
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    FAIL() << "nats-server did not start";
  }

  void Kill(int sig) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  // The `nats:` section for a sidecar config.
  std::string SidecarConfig(bool create_streams = true) const {
    return "nats: {url: \"" + url() + "\", createStreams: " + (create_streams ? "true" : "false") +
           "}\n";
  }

 private:
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace sidelog::testing
