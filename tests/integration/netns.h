// A small network of this machine's own for partition tests: `n` network namespaces, each with
// one address on a bridge that lives in a namespace of its own, plus a veth from the test's
// namespace to that bridge, so the test's processes (sidecars) reach every node while a node
// can be cut off from the others. Addresses are 10.201.0.1..n, and 10.201.0.254 on the test's
// side; the route to 10.201.0.0/24 goes only through that veth, and the bridge has no other
// port, so nothing addressed to them can leave the machine. Needs root (CAP_NET_ADMIN) and the
// `ip` and `iptables` commands; everything is deleted again by the destructor, and what a killed
// run left behind is deleted by the next one.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"

namespace sidelog::testing {

class TestNetwork {
 public:
  explicit TestNetwork(int nodes) : tag_("sl" + std::to_string(getpid())), nodes_(nodes) {
    RemoveStale();
    ok_ = Sh("ip netns add " + Ns("sw")) && Sh(In("sw") + "ip link add br0 type bridge") &&
          Sh(In("sw") + "ip link set br0 up") && Sh(In("sw") + "ip link set lo up") &&
          Sh("ip link add " + tag_ + "h type veth peer name tohost netns " + Ns("sw")) &&
          Sh(In("sw") + "ip link set tohost master br0 up") &&
          Sh("ip addr add 10.201.0.254/24 dev " + tag_ + "h") && Sh("ip link set " + tag_ + "h up");
    for (int i = 1; ok_ && i <= nodes; ++i) {
      const std::string n = "n" + std::to_string(i);
      ok_ = Sh("ip netns add " + Ns(n)) && Sh(In(n) + "ip link set lo up") &&
            Sh(In(n) + "ip link add eth0 type veth peer name " + n + " netns " + Ns("sw")) &&
            Sh(In("sw") + "ip link set " + n + " master br0 up") &&
            Sh(In(n) + "ip addr add " + Address(i) + "/24 dev eth0") &&
            Sh(In(n) + "ip link set eth0 up");
    }
  }
  ~TestNetwork() { Remove(tag_); }
  TestNetwork(const TestNetwork&) = delete;
  TestNetwork& operator=(const TestNetwork&) = delete;

  // False when the network could not be made (not root, or no `ip`): the test skips.
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  std::string Netns(int node) const { return Ns("n" + std::to_string(node)); }
  static std::string Address(int node) { return "10.201.0." + std::to_string(node); }

  // Node `node` stops exchanging packets with every other node (the test's side still reaches
  // it); Heal undoes it.
  bool Partition(int node) {
    bool ok = true;
    for (int other = 1; other <= nodes_; ++other) {
      if (other == node) continue;
      const std::string peer = Address(other);
      ok = ok && Sh(In("n" + std::to_string(node)) + "iptables -A INPUT -s " + peer + " -j DROP") &&
           Sh(In("n" + std::to_string(node)) + "iptables -A OUTPUT -d " + peer + " -j DROP");
    }
    return ok;
  }
  bool Heal(int node) { return Sh(In("n" + std::to_string(node)) + "iptables -F"); }

 private:
  std::string Ns(const std::string& name) const { return tag_ + "-" + name; }
  std::string In(const std::string& name) const { return "ip netns exec " + Ns(name) + " "; }

  bool Sh(const std::string& cmd) {
    int code = 0;
    const std::string out = RunCommand(cmd + " 2>&1", &code);
    if (code != 0 && error_.empty()) error_ = cmd + ": " + out;
    return code == 0;
  }

  // Namespaces are named sl<pid>-*: delete those of processes that no longer run.
  void RemoveStale() {
    std::istringstream lines(RunCommand("ip netns list 2>/dev/null"));
    std::vector<std::string> stale;
    for (std::string line; std::getline(lines, line);) {
      const std::string name = line.substr(0, line.find(' '));
      int pid = 0;
      if (sscanf(name.c_str(), "sl%d-", &pid) == 1 && pid != getpid() && kill(pid, 0) != 0) {
        stale.push_back("sl" + std::to_string(pid));
      }
    }
    for (const auto& tag : stale) Remove(tag);
  }

  static void Remove(const std::string& tag) {
    // Deleting a namespace deletes its interfaces and their veth peers.
    const std::string cmd = "for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^" +
                            tag + "-'); do ip netns delete $ns; done; ip link delete " + tag +
                            "h 2>/dev/null; true";
    if (std::system(cmd.c_str()) != 0) {
      // nothing more to do: a leftover is deleted by the next run
    }
  }

  std::string tag_;
  int nodes_;
  bool ok_ = false;
  std::string error_;
};

}  // namespace sidelog::testing
