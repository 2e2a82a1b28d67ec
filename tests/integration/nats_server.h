// Real nats-servers with JetStream for integration tests, on free loopback ports, with stores in
// temporary directories, started and killed by the test. `NATS_SERVER` overrides the binary
// (e.g. a current release built into .cache/tools); the default is Debian's nats-server.
//
// JetStream runs with `sync_interval: always` where the server has it (2.10 and later): by
// default JetStream fsyncs only every two minutes. Debian's 2.9 lacks the option; its tests
// kill processes, not machines, so the page cache keeps what was written either way.
#pragma once

#include <arpa/inet.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sidecar_process.h"
#include "sidelog/jetstream.h"

namespace sidelog::testing {

inline std::string NatsServerBinary() {
  const char* bin = std::getenv("NATS_SERVER");
  return bin && *bin ? bin : "nats-server";
}

// True when the nats-server binary is version major.minor or later.
inline bool NatsServerAtLeast(int want_major, int want_minor) {
  static const std::pair<int, int> version = [] {
    std::string cmd = NatsServerBinary() + " --version 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return std::make_pair(0, 0);
    char buf[128] = {0};
    std::string out = fgets(buf, sizeof buf, p) ? buf : "";
    pclose(p);
    int major = 0, minor = 0;
    auto v = out.rfind('v');  // "nats-server: v2.10.4"
    if (v == std::string::npos || sscanf(out.c_str() + v, "v%d.%d", &major, &minor) != 2) {
      return std::make_pair(0, 0);
    }
    return std::make_pair(major, minor);
  }();
  return version >= std::make_pair(want_major, want_minor);
}

// One nats-server process. A cluster member when `routes` is set.
class NatsServer {
 public:
  NatsServer() {
    char tmpl[] = "/tmp/sidelog-nats.XXXXXX";
    dir_ = mkdtemp(tmpl);
    port_ = FreePort();
    cluster_port_ = FreePort();
  }
  ~NatsServer() {
    Kill(SIGKILL);
    std::filesystem::remove_all(dir_);
  }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  // Makes this server a member of cluster `name` with the other members' route ports.
  void JoinCluster(const std::string& name, const std::string& server_name,
                   const std::vector<int>& route_ports) {
    cluster_name_ = name;
    server_name_ = server_name;
    routes_ = route_ports;
  }

  // Runs the server inside network namespace `netns`, listening (clients and cluster) on
  // `host`, with routes to `route_urls` ("host:port") instead of loopback ports. Before Start.
  void UseNetns(const std::string& netns, const std::string& host,
                const std::vector<std::string>& route_urls = {}) {
    netns_ = netns;
    host_ = host;
    route_urls_ = route_urls;
  }
  const std::string& host() const { return host_; }

  // Config lines added to the server's config file (a `tls {}` or `authorization {}` block).
  void AddConfig(const std::string& lines) { extra_config_ += lines + "\n"; }
  void set_scheme(const std::string& scheme) { scheme_ = scheme; }
  const std::string& dir() const { return dir_; }

  // Starts (or restarts, with the same port and store) and waits until clients can connect.
  void Start() {
    WriteConfig();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test, even when it is killed
      freopen((dir_ + "/nats.log").c_str(), "a", stderr);
      freopen((dir_ + "/nats.log").c_str(), "a", stdout);
      const std::string bin = NatsServerBinary();
      const std::string conf = dir_ + "/nats.conf";
      if (!netns_.empty()) {  // `ip netns exec` execs the server: the pid stays the server's
        execlp("ip", "ip", "netns", "exec", netns_.c_str(), bin.c_str(), "-c", conf.c_str(),
               nullptr);
      }
      execlp(bin.c_str(), bin.c_str(), "-c", conf.c_str(), nullptr);
      _exit(127);
    }
    for (int i = 0; i < 200; ++i) {
      if (Accepts()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // JetStream comes up last
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    FAIL() << "nats-server did not start:\n" << Log();
  }

  void Kill(int sig) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // Sends `sig` without waiting (SIGSTOP freezes the server, SIGCONT thaws it).
  void Signal(int sig) const {
    if (pid_ > 0) kill(pid_, sig);
  }

  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  int cluster_port() const { return cluster_port_; }
  // tls:// URLs name localhost: libnats verifies the host name against DNS SANs only.
  std::string url() const {
    return scheme_ + (scheme_ == "tls" ? "://localhost:" : "://" + host_ + ":") +
           std::to_string(port_);
  }
  // The `nats:` section for a sidecar config.
  std::string SidecarConfig(bool create_streams = true) const {
    return "nats: {url: \"" + url() + "\", createStreams: " + (create_streams ? "true" : "false") +
           "}\n";
  }
  std::string Log() const {
    std::ifstream in(dir_ + "/nats.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  bool Accepts() const {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    inet_pton(AF_INET, host_.c_str(), &addr.sin_addr);
    bool up = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    return up;
  }

  void WriteConfig() const {
    std::ofstream out(dir_ + "/nats.conf");
    out << "listen: " << host_ << ":" << port_ << "\n";
    if (!server_name_.empty()) out << "server_name: " << server_name_ << "\n";
    out << "jetstream {\n  store_dir: \"" << dir_ << "/js\"\n";
    if (NatsServerAtLeast(2, 10)) out << "  sync_interval: always\n";
    out << "}\n" << extra_config_;
    if (!cluster_name_.empty()) {
      out << "cluster {\n  name: " << cluster_name_ << "\n  listen: " << host_ << ":"
          << cluster_port_ << "\n  routes: [";
      std::vector<std::string> routes = route_urls_;
      for (int port : routes_) {
        if (route_urls_.empty()) routes.push_back("127.0.0.1:" + std::to_string(port));
      }
      for (size_t i = 0; i < routes.size(); ++i) {
        out << (i ? ", " : "") << "nats-route://" << routes[i];
      }
      out << "]\n}\n";
    }
  }

  std::string dir_;
  int port_ = 0;
  int cluster_port_ = 0;
  std::string cluster_name_, server_name_, extra_config_;
  std::string scheme_ = "nats";
  std::string netns_, host_ = "127.0.0.1";
  std::vector<int> routes_;
  std::vector<std::string> route_urls_;
  pid_t pid_ = -1;
};

// Three clustered nats-servers with JetStream on loopback.
class NatsCluster {
 public:
  NatsCluster() {
    for (int i = 0; i < 3; ++i) nodes_.push_back(std::make_unique<NatsServer>());
    for (int i = 0; i < 3; ++i) {
      std::vector<int> routes;
      for (int j = 0; j < 3; ++j) {
        if (j != i) routes.push_back(nodes_[j]->cluster_port());
      }
      nodes_[i]->JoinCluster("sidelog-it", "n" + std::to_string(i + 1), routes);
    }
  }

  // Starts every node and waits (up to 30 s) until JetStream answers through the cluster.
  void Start() {
    for (auto& n : nodes_) n->Start();
    NatsConfig c;
    c.url = urls();
    auto js = JetStream::Connect(c, nullptr);
    ASSERT_TRUE(js.ok()) << js.status().message();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      auto info = (*js)->Info("SIDELOG_probe");
      if (!info.ok() && info.status().code() == Status::Code::kNotFound) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    FAIL() << "the JetStream cluster did not elect a meta leader in 30 s:\n" << nodes_[0]->Log();
  }

  NatsServer& node(int i) { return *nodes_[static_cast<size_t>(i)]; }
  // Every node's URL, comma-separated (clients fail over between them), starting at `first`.
  std::string urls(int first = 0) const {
    std::string out;
    for (int k = 0; k < 3; ++k) {
      out += (k ? "," : "") + nodes_[static_cast<size_t>((first + k) % 3)]->url();
    }
    return out;
  }

 private:
  std::vector<std::unique_ptr<NatsServer>> nodes_;
};

}  // namespace sidelog::testing
