// Real processes for the consolidator's integration tests, each in its own temporary
// directory on free loopback ports: a standalone sidelog-sidecar, a throwaway PostgreSQL
// (scripts/postgres) and sidelog-consolidator itself, started with fork/exec and stopped by pid.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "client.h"
#include "sidecar_process.h"  // FreePort, shared with the sidecar tests

namespace sidelog::testing {

using Clock = std::chrono::steady_clock;

inline std::string MakeTempDir(const char* prefix) {
  std::string tmpl = std::string("/tmp/") + prefix + ".XXXXXX";
  return mkdtemp(tmpl.data());
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A child process with stderr in `log`; killed (SIGKILL) when destroyed.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { Kill(SIGKILL); }

  void Spawn(const std::vector<std::string>& argv, const std::string& log) {
    // Everything is prepared before fork: the child only calls async-signal-safe functions.
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_ = fork();
    if (pid_ == 0) {
      if (fd < 0 || dup2(fd, STDERR_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0) _exit(126);
      execv(args[0], args.data());
      _exit(127);
    }
    if (fd >= 0) close(fd);
  }
  // Sends `sig` and waits; returns the wait status, or -1 when not running.
  int Kill(int sig) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  // True (with the wait status) when the process has exited.
  bool Exited(int* status) {
    if (pid_ <= 0) return true;
    if (waitpid(pid_, status, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    return false;
  }
  bool running() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

// Polls `url` + `path` until it answers 200; false after `timeout`.
inline bool WaitForOk(const std::string& url, const std::string& path,
                      std::chrono::milliseconds timeout) {
  cli::Client client(url);
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (client.Send("GET", path).status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// The streams the shop tests use, without rules: the tests script valid histories themselves.
inline const char* kShopStreams = R"(
streams:
  - name: orders
    access: write
  - name: customers
    access: write
)";

// A standalone sidecar, with its default thread pool.
class Sidecar {
 public:
  explicit Sidecar(const std::string& streams = kShopStreams)
      : dir_(MakeTempDir("sidelog-cons-sc")), port_(FreePort()), health_port_(FreePort()) {
    std::ofstream(dir_ + "/sidecar.yaml")
        << "service: shop\nnamespace: it\nlisten: 127.0.0.1:" << port_
        << "\nhealthListen: 127.0.0.1:" << health_port_ << "\ndataDir: " << dir_ << "/data\n"
        << "durability: normal\nsse: {heartbeatMs: 300}\n"
        << streams;
  }
  ~Sidecar() {
    child_.Kill(SIGKILL);
    std::filesystem::remove_all(dir_);
  }
  // $SIDELOG_SIDECAR_BIN, when set, runs another sidecar build than the one in this tree.
  void Start() {
    const char* bin = std::getenv("SIDELOG_SIDECAR_BIN");
    child_.Spawn({bin && *bin ? bin : SIDELOG_SIDECAR_BIN, "--config", dir_ + "/sidecar.yaml"},
                 dir_ + "/sidecar.log");
    ASSERT_TRUE(WaitForOk(health_url(), "/readyz", std::chrono::seconds(10)))
        << ReadFile(dir_ + "/sidecar.log");
  }
  // Sends `sig` and waits for the exit.
  void Kill(int sig) { child_.Kill(sig); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string health_url() const { return "http://127.0.0.1:" + std::to_string(health_port_); }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  int port_, health_port_;
  Child child_;
};

// A throwaway PostgreSQL cluster (scripts/postgres), stopped and removed when destroyed.
class Postgres {
 public:
  Postgres() : dir_(MakeTempDir("sidelog-cons-pg")), port_(FreePort()) {
    std::string cmd = std::string(SIDELOG_SOURCE_DIR) + "/scripts/postgres start " + dir_ +
                      "/data " + std::to_string(port_) + " > " + dir_ + "/start.log 2>&1";
    started_ = std::system(cmd.c_str()) == 0;
  }
  ~Postgres() {
    std::string cmd = std::string(SIDELOG_SOURCE_DIR) + "/scripts/postgres stop " + dir_ + "/data";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "stopping PostgreSQL failed\n");
    std::filesystem::remove_all(dir_);
  }
  bool started() const { return started_; }
  std::string log() const { return ReadFile(dir_ + "/start.log"); }
  std::string conninfo() const {
    return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=postgres";
  }

 private:
  std::string dir_;
  int port_;
  bool started_ = false;
};

// sidelog-consolidator with a config written to its directory.
class ConsolidatorProcess {
 public:
  ConsolidatorProcess() : dir_(MakeTempDir("sidelog-cons")), port_(FreePort()) {}
  ~ConsolidatorProcess() {
    child_.Kill(SIGKILL);
    std::filesystem::remove_all(dir_);
  }

  void WriteConfig(const std::string& yaml) { std::ofstream(config_path()) << yaml; }

  // Starts it and waits until /readyz answers 200 (at most 15 s).
  void Start() { StartAndWaitFor("/readyz", "become ready"); }

  // Starts it as a standby replica: waits until /livez answers (at most 15 s), not /readyz.
  void StartStandby() { StartAndWaitFor("/livez", "answer /livez"); }

  // Starts it and expects it to exit at once; returns its exit code.
  int StartAndExpectExit() {
    child_.Spawn({SIDELOG_CONSOLIDATOR_BIN, "--config", config_path()}, log_path());
    auto deadline = Clock::now() + std::chrono::seconds(15);
    int status = 0;
    while (Clock::now() < deadline) {
      if (child_.Exited(&status)) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "the consolidator kept running:\n" << Log();
    return -1;
  }

  // Runs `sidelog-consolidator rebuild --config ...` to completion; returns its exit code.
  int RunRebuildCommand() {
    Child cli;
    cli.Spawn({SIDELOG_CONSOLIDATOR_BIN, "rebuild", "--config", config_path()},
              dir_ + "/rebuild.log");
    auto deadline = Clock::now() + std::chrono::seconds(60);
    int status = 0;
    while (Clock::now() < deadline) {
      if (cli.Exited(&status)) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "rebuild did not finish in 60 s:\n" << ReadFile(dir_ + "/rebuild.log");
    return -1;
  }

  // Runs `sidelog rebuild --consolidator URL [extra...]` (the CLI, output piped) to
  // completion; returns its exit code. Its output is in CliLog().
  int RunCliRebuild(const std::vector<std::string>& extra = {}) {
    Child cli;
    std::vector<std::string> argv = {SIDELOG_CLI_BIN, "rebuild", "--consolidator", url()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::filesystem::remove(dir_ + "/cli.log");
    cli.Spawn(argv, dir_ + "/cli.log");
    auto deadline = Clock::now() + std::chrono::seconds(60);
    int status = 0;
    while (Clock::now() < deadline) {
      if (cli.Exited(&status)) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "sidelog rebuild did not finish in 60 s:\n" << ReadFile(dir_ + "/cli.log");
    return -1;
  }
  std::string CliLog() const { return ReadFile(dir_ + "/cli.log"); }

  int Kill(int sig) { return child_.Kill(sig); }

  std::string Log() const { return ReadFile(log_path()); }
  std::string RebuildLog() const { return ReadFile(dir_ + "/rebuild.log"); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string listen() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& dir() const { return dir_; }
  std::string config_path() const { return dir_ + "/consolidator.yaml"; }
  std::string log_path() const { return dir_ + "/consolidator.log"; }

 private:
  void StartAndWaitFor(const std::string& path, const std::string& what) {
    child_.Spawn({SIDELOG_CONSOLIDATOR_BIN, "--config", config_path(), "--log-level", "info"},
                 log_path());
    auto deadline = Clock::now() + std::chrono::seconds(15);
    cli::Client client(url());
    while (Clock::now() < deadline) {
      if (client.Send("GET", path).status == 200) return;
      int status = 0;
      if (child_.Exited(&status)) FAIL() << "the consolidator exited at start:\n" << Log();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "the consolidator did not " << what << " in 15 s:\n" << Log();
  }

  std::string dir_;
  int port_;
  Child child_;
};

}  // namespace sidelog::testing
