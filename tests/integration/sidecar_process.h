// A real sidelog-sidecar process for integration tests: free loopback ports, a config written
// to a temporary directory, started with fork/exec, ready when /readyz answers 200, and stopped
// with a signal.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "client.h"

namespace sidelog::testing {

// Whether a server could listen on 127.0.0.1:`port` now.
inline bool CanListenOn(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

// A port for a server the test starts. Not bind(0): that port comes from the kernel's ephemeral
// range (32768-60999 here), where a test running at the same time (ctest -j) can be given the
// same port before this test's server binds it, and where every client connection takes its
// local port. Instead each test process takes ports one after another from its own block of 128
// below that range, picked by its pid, from an offset picked by the time, skipping ports in use.
inline int FreePort() {
  constexpr int kFirst = 16384, kBlocks = 128, kBlock = 128;  // 16384-32767
  static std::mutex mu;
  static int block = -1, next = 0;
  std::lock_guard<std::mutex> lock(mu);
  if (block < 0) {
    block = kFirst + static_cast<int>(getpid() % kBlocks) * kBlock;
    next = static_cast<int>(std::chrono::steady_clock::now().time_since_epoch().count() % kBlock);
  }
  for (int tries = 0; tries < kBlock; ++tries) {
    const int port = block + next;
    next = (next + 1) % kBlock;
    if (CanListenOn(port)) return port;
  }
  ADD_FAILURE() << "no free port in " << block << "-" << block + kBlock - 1;
  return 0;
}

// The streams most tests use: `orders` (write, with rules), `audit` (read only).
inline const char* kTestStreams = R"(
streams:
  - name: orders
    access: write
    entity:
      reducers:
        ItemAdded: [{op: append, path: /items, from: /item}]
        Paid: [{op: increment, path: /paid, from: /amount}]
        Deleted: [{op: delete}]
      stateMachine:
        initial: new
        transitions:
          - {event: Created, from: [new], to: created}
          - {event: Paid, from: [created], to: paid}
      schemas:
        Created: {type: object, required: [customerId]}
  - name: audit
    access: read
)";

class SidecarProcess {
 public:
  // `extra` is YAML inserted before the streams, e.g. a `nats:` section; `service` names it.
  explicit SidecarProcess(std::string streams_yaml = kTestStreams, std::string extra = "",
                          std::string service = "test")
      : service_(std::move(service)) {
    char tmpl[] = "/tmp/sidelog-it.XXXXXX";
    dir_ = mkdtemp(tmpl);
    streams_ = std::move(streams_yaml);
    extra_ = std::move(extra);
    port_ = FreePort();
    health_port_ = FreePort();
    WriteConfig();
  }
  ~SidecarProcess() {
    Kill(SIGKILL);
    std::filesystem::remove_all(dir_);
  }

  void WriteConfig() {
    std::ofstream out(dir_ + "/sidecar.yaml");
    out << "service: " << service_ << "\nnamespace: it\nlisten: 127.0.0.1:" << port_
        << "\nhealthListen: 127.0.0.1:" << health_port_ << "\ndataDir: " << dir_ << "/data\n"
        << "sse: {heartbeatMs: 300}\n"
        << extra_ << streams_;
  }

  // Starts the process and waits until /readyz answers 200 (at most `timeout`; a sidecar that
  // cannot reach NATS gives up its startup catch-up after 10 s).
  void Start(std::chrono::seconds timeout = std::chrono::seconds(10)) {
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test, even when it is killed
      for (const auto& [k, v] : env_) setenv(k.c_str(), v.c_str(), 1);
      std::string log = dir_ + "/sidecar.log";
      freopen(log.c_str(), "a", stderr);
      execl(SIDELOG_SIDECAR_BIN, "sidelog-sidecar", "--config", (dir_ + "/sidecar.yaml").c_str(),
            "--log-level", "info", nullptr);
      _exit(127);
    }
    cli::Client health("http://127.0.0.1:" + std::to_string(health_port_));
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (health.Send("GET", "/readyz").status == 200) {
        // Make sure the process answering is ours, not another test's on a reused port.
        auto status = cli::Client(url()).Send("GET", "/v1/status");
        std::string path = status.body.is_object() ? status.body["log"].value("path", "") : "";
        if (path.rfind(dir_, 0) != 0) FAIL() << "port " << port_ << " is served by another process";
        return;
      }
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL() << "the sidecar exited during startup:\n" << Log();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "the sidecar did not become ready in " << timeout.count() << " s:\n" << Log();
  }

  // Environment for the next Start (e.g. SIDELOG_FAULT); empty `value` removes the name.
  void SetEnv(const std::string& name, const std::string& value) {
    if (value.empty()) {
      env_.erase(name);
    } else {
      env_[name] = value;
    }
  }

  // True when the process has exited (reaped here); false while it runs.
  bool Exited() {
    if (pid_ <= 0) return true;
    int status;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
    pid_ = -1;
    return true;
  }

  // Sends `sig` and waits for the exit; returns the wait status (-1 if not running).
  int Kill(int sig) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  std::string Log() const {
    std::ifstream in(dir_ + "/sidecar.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string health_url() const { return "http://127.0.0.1:" + std::to_string(health_port_); }
  const std::string& dir() const { return dir_; }
  int port() const { return port_; }
  int health_port() const { return health_port_; }
  pid_t pid() const { return pid_; }
  void set_extra(std::string extra) {
    extra_ = std::move(extra);
    WriteConfig();
  }

 private:
  std::map<std::string, std::string> env_;
  std::string service_, dir_, streams_, extra_;
  int port_ = 0, health_port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace sidelog::testing
