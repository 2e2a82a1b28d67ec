// Operator: the sidelog-operator process. It owns the Kubernetes client, the JetStream
// connection, the health listener (/healthz, /readyz, /metrics), leader election, and the
// Manager that runs a controller per kind it reconciles (EventStream, EventService,
// Consolidator) on shared
// informers.
//
// Only the leader runs the Manager; a standby campaigns and answers probes. Every replica
// serves the sidecar injection webhook (SidecarWebhook), and the leader also keeps its
// certificates (WebhookCertificateReconciler).
// Losing the Lease ends the process (exit 1), as controller-runtime does: a fresh start is the
// simplest way to be sure no reconcile of the old term is still running.
#pragma once

#include <cpprest/http_listener.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "consolidator_reconciler.h"
#include "controller.h"
#include "event_recorder.h"
#include "eventservice_reconciler.h"
#include "eventstream_reconciler.h"
#include "kube_client.h"
#include "leader_election.h"
#include "manager.h"
#include "nats_identities.h"
#include "sidecar_webhook.h"
#include "sidelog/config.h"
#include "sidelog/jetstream.h"
#include "sidelog/metrics.h"

namespace sidelog::op {

struct OperatorOptions {
  std::string kubeconfig;       // empty: KUBECONFIG, in-cluster, ~/.kube/config
  std::string watch_namespace;  // empty: every namespace
  NatsConfig nats;
  std::string health_listen = "0.0.0.0:8081";
  bool leader_elect = true;
  LeaderElectionOptions election;  // ns empty: the config's default namespace
  ControllerOptions controller;
  CyclePolicy dependency_cycles = CyclePolicy::kWarn;
  // The injection webhook; `webhook.listen` empty turns it off. Its certificates' namespace
  // is the leader election's when empty.
  SidecarWebhookOptions webhook;
  // The Consolidators' workloads: image, status period, NATS (main.cc copies the operator's).
  ConsolidatorOptions consolidators;
  // Per-service NATS identities (docs/security.md): the authority Secret's name in the
  // operator's namespace; empty turns them off (every client uses the configured credentials).
  // The operator then connects with credentials it issues itself.
  std::string nats_identities;
  std::string nats_resolver_dir = "/data/jwt";  // written into auth.conf
};

class Operator {
 public:
  explicit Operator(OperatorOptions options);
  ~Operator();

  // Connects, opens the health listener and starts campaigning (or, without leader election,
  // reconciling). Errors are configuration errors: the process should exit.
  Status Start();
  // Stops reconciling (in-flight reconciles finish), releases the Lease, closes connections.
  void Stop();

 private:
  void StartControllers();
  void Serve(const web::http::http_request& request);
  bool Ready() const;

  OperatorOptions options_;
  Metrics metrics_;
  std::unique_ptr<KubeClient> client_;
  std::unique_ptr<JetStream> js_;
  std::unique_ptr<EventRecorder> recorder_;
  std::unique_ptr<web::http::experimental::listener::http_listener> health_;
  std::unique_ptr<LeaderElector> elector_;
  std::thread elector_thread_;
  std::unique_ptr<Manager> manager_;
  std::unique_ptr<EventStreamReconciler> streams_reconciler_;
  std::unique_ptr<EventServiceReconciler> services_reconciler_;
  std::unique_ptr<ConsolidatorReconciler> consolidators_reconciler_;
  std::unique_ptr<SidecarWebhook> webhook_;
  std::unique_ptr<WebhookCertificateReconciler> certificates_reconciler_;
  Controller* streams_controller_ = nullptr;
  std::atomic<bool> running_{false};  // the manager is started

  // With NATS identities: the authority, the system account's connection that pushes account
  // updates, a private directory for the operator's own credentials files, and the leader's
  // thread that pushes the account after each reconnect (and retries a failed push).
  Status OpenIdentities();
  void PushAccounts();
  std::unique_ptr<NatsIdentities> identities_;
  std::unique_ptr<JetStream> system_js_;
  std::string creds_dir_;
  std::thread pusher_;
  std::mutex pusher_mu_;
  std::condition_variable pusher_cv_;
  bool pusher_stop_ = false;
  bool force_push_ = true;
};

}  // namespace sidelog::op
