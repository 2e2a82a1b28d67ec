// sidelog-operator: reconciles Sidelog's custom resources (EventStream, EventService) against
// the Kubernetes API and NATS JetStream.
//
//   sidelog-operator --nats URL [--kubeconfig FILE] [--namespace NS] [flags]
//
// Flags (environment variables in brackets):
//   --kubeconfig FILE            [KUBECONFIG] default: in-cluster, then ~/.kube/config
//   --namespace NS               watch only NS (default: every namespace)
//   --nats URL                   [SIDELOG_NATS_URL] NATS server(s), comma-separated
//   --nats-creds FILE            NATS credentials file
//   --nats-user USER             [SIDELOG_NATS_USER]  with --nats-password [SIDELOG_NATS_PASSWORD]
//   --nats-token TOKEN           [SIDELOG_NATS_TOKEN]
//   --nats-tls-ca FILE, --nats-tls-cert FILE, --nats-tls-key FILE
//   --health-listen HOST:PORT    /healthz, /readyz, /metrics (default 0.0.0.0:8081)
//   --leader-elect true|false    default true
//   --leader-election-namespace NS  [POD_NAMESPACE] default: the kubeconfig's namespace
//   --leader-election-id NAME    the Lease's name (default sidelog-operator)
//   --identity ID                [POD_NAME] default: hostname_pid
//   --lease-duration D, --renew-deadline D, --retry-period D   default 15s, 10s, 2s
//   --resync-period D            default 30s: drift is repaired within this period
//   --workers N                  concurrent reconciles per kind (default 4)
//   --dependency-cycles allow|warn|deny   EventServices that depend on each other in a
//                                cycle: ignored, listed with a Warning (default), or refused
//   --webhook-listen HOST:PORT   the sidecar injection webhook, HTTPS (default 0.0.0.0:9443;
//                                "off" turns it off)
//   --webhook-service NAME       its Service, named in the certificate (default sidelog-webhook)
//   --webhook-hosts H1,H2        more names or IPs for the certificate (127.0.0.1 for a URL)
//   --webhook-configuration NAME the MutatingWebhookConfiguration whose caBundle is kept
//                                (default sidelog-sidecar-injector)
//   --webhook-secret NAME        the Secret that holds the CA and the certificate, in the
//                                operator's namespace (default sidelog-webhook-tls)
//   --webhook-cert-validity D    validity of the CA and the certificate (default 8760h);
//                                renewed after two thirds
//   --sidecar-image IMAGE        [SIDELOG_SIDECAR_IMAGE] the injected sidecar's image, unless
//                                an EventService names one (default
//                                docker.io/sidelog/sidecar:<version>)
//   --sidecar-nats-creds-secret NAME, --sidecar-nats-tls-secret NAME
//                                Secrets (in each app's namespace) mounted into sidecars for
//                                the NATS credentials file and TLS files
//   --nats-identities SECRET     per-service NATS identities (docs/security.md): the
//                                authority Secret in the operator's namespace, made when
//                                missing; every EventService and Consolidator gets its own
//                                credentials, and the operator connects with its own (the
//                                --nats-creds/user/password/token flags are then not used)
//   --nats-resolver-dir DIR      the NATS servers' account JWT directory, written into the
//                                authority's auth.conf (default /data/jwt)
//   --log-level LEVEL            debug, info (default), warn, error
//
// SIGTERM or SIGINT: finish the reconciles in flight, release the Lease, exit 0.
#include <pplx/threadpool.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <thread>

#include "operator.h"
#include "sidelog/duration.h"
#include "sidelog/log.h"
#include "sidelog/shutdown.h"

namespace {

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "sidelog-operator: " << message << "\n"
            << "usage: sidelog-operator --nats URL [--kubeconfig FILE] [--namespace NS] "
               "[--help for every flag]\n";
  std::exit(2);
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::chrono::milliseconds Duration(const std::string& flag, const std::string& text) {
  auto d = sidelog::ParseDuration(text);
  if (!d.ok() || d->count() <= 0)
    Fail(flag + ": " + (d.ok() ? "must be positive" : d.status().message()));
  return std::chrono::duration_cast<std::chrono::milliseconds>(*d);
}

std::string DefaultIdentity() {
  if (auto pod = Env("POD_NAME"); !pod.empty()) return pod;
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return std::string(host) + "_" + std::to_string(getpid());
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sidelog;
  op::OperatorOptions o;
  o.nats.url = Env("SIDELOG_NATS_URL");
  o.nats.user = Env("SIDELOG_NATS_USER");
  o.nats.password = Env("SIDELOG_NATS_PASSWORD");
  o.nats.token = Env("SIDELOG_NATS_TOKEN");
  o.election.ns = Env("POD_NAMESPACE");
  o.election.identity = DefaultIdentity();
  o.controller.workers = 4;
  o.webhook.injector.operator_version = SIDELOG_VERSION;
  o.webhook.injector.sidecar_image = Env("SIDELOG_SIDECAR_IMAGE");
  if (o.webhook.injector.sidecar_image.empty())
    o.webhook.injector.sidecar_image = std::string("docker.io/sidelog/sidecar:") + SIDELOG_VERSION;
  o.consolidators.workload.image = Env("SIDELOG_CONSOLIDATOR_IMAGE");
  if (o.consolidators.workload.image.empty())
    o.consolidators.workload.image =
        std::string("docker.io/sidelog/consolidator:") + SIDELOG_VERSION;
  if (const char* tmp = std::getenv("TMPDIR"); tmp && *tmp) o.consolidators.scratch_dir = tmp;
  std::string level = "info";
  std::string webhook_hosts;

  std::map<std::string, std::string*> strings = {
      {"--kubeconfig", &o.kubeconfig},
      {"--namespace", &o.watch_namespace},
      {"--nats", &o.nats.url},
      {"--nats-creds", &o.nats.creds_file},
      {"--nats-identities", &o.nats_identities},
      {"--nats-resolver-dir", &o.nats_resolver_dir},
      {"--nats-user", &o.nats.user},
      {"--nats-password", &o.nats.password},
      {"--nats-token", &o.nats.token},
      {"--nats-tls-ca", &o.nats.tls.ca},
      {"--nats-tls-cert", &o.nats.tls.cert},
      {"--nats-tls-key", &o.nats.tls.key},
      {"--health-listen", &o.health_listen},
      {"--leader-election-namespace", &o.election.ns},
      {"--leader-election-id", &o.election.name},
      {"--identity", &o.election.identity},
      {"--log-level", &level},
      {"--webhook-listen", &o.webhook.listen},
      {"--webhook-service", &o.webhook.service},
      {"--webhook-hosts", &webhook_hosts},
      {"--webhook-configuration", &o.webhook.certificates.configuration},
      {"--webhook-secret", &o.webhook.certificates.secret},
      {"--sidecar-image", &o.webhook.injector.sidecar_image},
      {"--sidecar-nats-creds-secret", &o.webhook.injector.nats_creds_secret},
      {"--sidecar-nats-tls-secret", &o.webhook.injector.nats_tls_secret},
      {"--consolidator-image", &o.consolidators.workload.image},
  };
  std::map<std::string, std::chrono::milliseconds*> durations = {
      {"--lease-duration", &o.election.lease_duration},
      {"--renew-deadline", &o.election.renew_deadline},
      {"--retry-period", &o.election.retry_period},
      {"--resync-period", &o.controller.resync_period},
      {"--consolidator-status-period", &o.consolidators.status_period},
  };
  std::chrono::milliseconds validity = o.webhook.certificates.validity;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout
          << "sidelog-operator: reconciles Sidelog's custom resources.\n"
             "flags: --kubeconfig --namespace --nats --nats-creds --nats-user --nats-password\n"
             "  --nats-token --nats-tls-ca --nats-tls-cert --nats-tls-key --health-listen\n"
             "  --leader-elect --leader-election-namespace --leader-election-id --identity\n"
             "  --lease-duration --renew-deadline --retry-period --resync-period --workers\n"
             "  --dependency-cycles allow|warn|deny --webhook-listen --webhook-service\n"
             "  --webhook-hosts --webhook-configuration --webhook-secret\n"
             "  --webhook-cert-validity --sidecar-image --sidecar-nats-creds-secret\n"
             "  --sidecar-nats-tls-secret --nats-identities --nats-resolver-dir\n"
             "  --consolidator-image --consolidator-status-period\n"
             "  --log-level   (see docs/operator.md)\n";
      return 0;
    }
    std::string value;
    auto eq = a.find('=');
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else {
      if (i + 1 >= argc) Fail(a + " needs a value");
      value = argv[++i];
    }
    if (auto s = strings.find(a); s != strings.end()) {
      *s->second = value;
    } else if (auto d = durations.find(a); d != durations.end()) {
      *d->second = Duration(a, value);
    } else if (a == "--webhook-cert-validity") {
      validity = Duration(a, value);
    } else if (a == "--leader-elect") {
      if (value != "true" && value != "false") Fail("--leader-elect takes true or false");
      o.leader_elect = value == "true";
    } else if (a == "--dependency-cycles") {
      if (!op::ParseCyclePolicy(value, &o.dependency_cycles))
        Fail("--dependency-cycles takes allow, warn or deny");
    } else if (a == "--workers") {
      o.controller.workers = std::atoi(value.c_str());
      if (o.controller.workers < 1 || o.controller.workers > 64) Fail("--workers must be 1-64");
    } else {
      Fail("unknown flag " + a);
    }
  }
  if (o.nats.url.empty()) Fail("--nats (or SIDELOG_NATS_URL) is required");
  if (o.webhook.listen == "off") o.webhook.listen.clear();
  if (validity < std::chrono::seconds(10)) Fail("--webhook-cert-validity must be 10s or more");
  o.webhook.certificates.validity = std::chrono::duration_cast<std::chrono::seconds>(validity);
  for (size_t start = 0; start < webhook_hosts.size();) {
    size_t comma = webhook_hosts.find(',', start);
    if (comma == std::string::npos) comma = webhook_hosts.size();
    if (comma > start) o.webhook.extra_hosts.push_back(webhook_hosts.substr(start, comma - start));
    start = comma + 1;
  }
  // The rendered sidecar config names the operator's own NATS file paths; the injected
  // Secrets are mounted in the same directories.
  auto dir = [](const std::string& file) { return file.substr(0, file.rfind('/')); };
  if (o.nats.creds_file.find('/') != std::string::npos)
    o.webhook.injector.nats_creds_dir = dir(o.nats.creds_file);
  if (o.nats.tls.ca.find('/') != std::string::npos)
    o.webhook.injector.nats_tls_dir = dir(o.nats.tls.ca);
  // Consolidator pods reach NATS like the sidecars: the same Secrets at the same paths.
  o.consolidators.workload.nats = o.nats;
  o.consolidators.workload.nats_creds_secret = o.webhook.injector.nats_creds_secret;
  o.consolidators.workload.nats_tls_secret = o.webhook.injector.nats_tls_secret;
  o.consolidators.workload.nats_creds_dir = o.webhook.injector.nats_creds_dir;
  o.consolidators.workload.nats_tls_dir = o.webhook.injector.nats_tls_dir;
  if (o.consolidators.status_period < std::chrono::seconds(1)) {
    Fail("--consolidator-status-period must be 1s or more");
  }
  if (o.election.renew_deadline >= o.election.lease_duration) {
    Fail("--renew-deadline must be shorter than --lease-duration");
  }
  log::Init("operator", level);

  BlockShutdownSignals();  // before any thread starts
  // Requests block operator threads, not pool threads: a few pool threads drive all the I/O.
  crossplat::threadpool::initialize_with_threads(4);

  op::Operator server(o);
  if (auto s = server.Start(); !s.ok()) {
    log::Error("cannot start", {{"error", s.message()}});
    std::cerr << "sidelog-operator: " << s.message() << "\n";
    return 1;
  }
  log::Info("started", {{"identity", o.election.identity},
                        {"healthListen", o.health_listen},
                        {"leaderElection", o.leader_elect},
                        {"webhookListen", o.webhook.listen},
                        {"nats", o.nats.url}});
  int sig = WaitForShutdownSignal();
  log::Info("shutting down", {{"signal", strsignal(sig)}});
  ExitIfShutdownTakesLonger(std::chrono::seconds(15));
  server.Stop();
  log::Info("stopped");
  return 0;
}
