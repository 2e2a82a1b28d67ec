#include "leader_election.h"

#include <cmath>

#include "sidelog/log.h"

namespace sidelog::op {
namespace {
const ResourceType kLeases{"coordination.k8s.io", "v1", "leases", "Lease", true};
}

LeaderElector::LeaderElector(KubeApi* client, LeaderElectionOptions options)
    : client_(client), options_(std::move(options)) {}

bool LeaderElector::Sleep(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, d, [this] { return stop_.load(); });
  return !stop_;
}

void LeaderElector::Stop() {
  stop_ = true;
  cv_.notify_all();
}

bool LeaderElector::TryAcquireOrRenew() {
  const auto now = std::chrono::steady_clock::now();
  const int duration_s =
      static_cast<int>(std::ceil(static_cast<double>(options_.lease_duration.count()) / 1000.0));
  Json spec = {{"holderIdentity", options_.identity},
               {"leaseDurationSeconds", duration_s},
               {"renewTime", KubeMicroTimeNow()}};

  auto current = client_->Get(kLeases, options_.ns, options_.name);
  if (!current.ok()) {
    if (current.status().code() != Status::Code::kNotFound) {
      log::Warn("cannot read the leader Lease", {{"error", current.status().message()}});
      return false;
    }
    spec["acquireTime"] = spec["renewTime"];
    spec["leaseTransitions"] = 0;
    Json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata", {{"name", options_.name}, {"namespace", options_.ns}}},
                  {"spec", spec}};
    auto created = client_->Create(kLeases, options_.ns, lease);
    if (!created.ok()) return false;  // another candidate created it first
    observed_spec_ = (*created)["spec"];
    observed_at_ = now;
    return true;
  }

  Json& lease = *current;
  const Json old = lease.value("spec", Json::object());
  if (old != observed_spec_) {
    observed_spec_ = old;
    observed_at_ = now;
  }
  const std::string holder = old.value("holderIdentity", "");
  const bool mine = holder == options_.identity;
  const auto held_for = std::chrono::seconds(old.value("leaseDurationSeconds", duration_s));
  if (!mine && !holder.empty() && observed_at_ + held_for > now) return false;  // held by another

  if (mine) {
    spec["acquireTime"] = old.value("acquireTime", spec["renewTime"].get<std::string>());
    spec["leaseTransitions"] = old.value("leaseTransitions", 0);
  } else {
    spec["acquireTime"] = spec["renewTime"];
    spec["leaseTransitions"] = old.value("leaseTransitions", 0) + 1;
  }
  lease["spec"] = spec;
  auto updated = client_->Update(kLeases, lease);  // guarded by metadata.resourceVersion
  if (!updated.ok()) return false;
  observed_spec_ = (*updated)["spec"];
  observed_at_ = now;
  if (!mine) {
    log::Info("acquired the leader Lease",
              {{"lease", options_.ns + "/" + options_.name}, {"previousHolder", holder}});
  }
  return true;
}

void LeaderElector::Release() {
  auto current = client_->Get(kLeases, options_.ns, options_.name);
  if (!current.ok() || (*current)["spec"].value("holderIdentity", "") != options_.identity) return;
  Json& lease = *current;
  lease["spec"]["holderIdentity"] = "";
  lease["spec"]["leaseDurationSeconds"] = 1;
  lease["spec"]["renewTime"] = KubeMicroTimeNow();
  auto r = client_->Update(kLeases, lease);
  if (r.ok())
    log::Info("released the leader Lease", {{"lease", options_.ns + "/" + options_.name}});
}

void LeaderElector::Run(const std::function<void()>& on_started,
                        const std::function<void(bool lost)>& on_stopped) {
  log::Info("campaigning for the leader Lease",
            {{"lease", options_.ns + "/" + options_.name}, {"identity", options_.identity}});
  while (!stop_ && !TryAcquireOrRenew()) {
    if (!Sleep(options_.retry_period)) return;
  }
  if (stop_) return;
  leader_ = true;
  on_started();
  auto last_renew = std::chrono::steady_clock::now();
  bool lost = false;
  while (Sleep(options_.retry_period)) {
    if (TryAcquireOrRenew()) {
      last_renew = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - last_renew > options_.renew_deadline) {
      log::Error("lost the leader Lease: could not renew it within the renew deadline",
                 {{"lease", options_.ns + "/" + options_.name},
                  {"renewDeadlineMs", options_.renew_deadline.count()}});
      lost = true;
      break;
    }
  }
  leader_ = false;
  if (!lost) Release();
  on_stopped(lost);
}

}  // namespace sidelog::op
