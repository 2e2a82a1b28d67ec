// LeaderElector: one leader among operator replicas, through a coordination.k8s.io/v1 Lease,
// with client-go's rules.
//  - A candidate takes the Lease when it is free, released (empty holder), or when its record
//    has not changed for lease_duration by the candidate's own clock (clocks of different
//    machines are never compared).
//  - Every write is a PUT guarded by resourceVersion, so two candidates never both win.
//  - The leader renews every retry_period; if it cannot renew for renew_deadline it has lost
//    the Lease, and must stop reconciling at once (the operator exits; Kubernetes restarts it
//    as a candidate).
//
// Thread-safe: Run on one thread; IsLeader from any.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>

#include "kube_client.h"

namespace sidelog::op {

struct LeaderElectionOptions {
  std::string ns;
  std::string name = "sidelog-operator";
  std::string identity;
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
};

class LeaderElector {
 public:
  LeaderElector(KubeApi* client, LeaderElectionOptions options);

  // Campaigns until this process leads, then calls `on_started` and renews until Stop or until
  // leadership is lost; then calls `on_stopped(lost)`, where lost is false after Stop. On Stop
  // a leader releases the Lease (empty holder), so a standby takes over at once.
  void Run(const std::function<void()>& on_started,
           const std::function<void(bool lost)>& on_stopped);
  void Stop();
  bool IsLeader() const { return leader_; }

 private:
  // One attempt: true when this process holds the Lease afterwards.
  bool TryAcquireOrRenew();
  void Release();
  bool Sleep(std::chrono::milliseconds d);  // false when stopped

  KubeApi* client_;
  const LeaderElectionOptions options_;
  std::atomic<bool> leader_{false};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  Json observed_spec_;  // the Lease spec as last seen
  std::chrono::steady_clock::time_point observed_at_{};
};

}  // namespace sidelog::op
