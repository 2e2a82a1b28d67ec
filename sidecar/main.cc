// sidelog-sidecar: the localhost HTTP API of one microservice pod over its local event log.
//
//   sidelog-sidecar --config sidecar.yaml [--listen HOST:PORT] [--health-listen HOST:PORT]
//                   [--data-dir DIR] [--log-level LEVEL] [--threads N]
//                   [--nats URL | --standalone]
//
// Environment: SIDELOG_APP_PORT sets the app's port for push deliveries (config `appPort`).
//
// Flags override the config file. SIGTERM or SIGINT: stop accepting appends, finish the ones in
// flight, close the log, exit 0.
#include <pplx/threadpool.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>

#include "server.h"
#include "sidelog/config.h"
#include "sidelog/log.h"
#include "sidelog/shutdown.h"

namespace {

void Usage() {
  std::cerr << "usage: sidelog-sidecar --config FILE [--listen HOST:PORT] [--health-listen "
               "HOST:PORT] [--data-dir DIR] [--log-level LEVEL] [--threads N] [--nats URL | "
               "--standalone]\n";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sidelog;
  auto started = std::chrono::steady_clock::now();
  std::string config_path, listen, health, data_dir, level, nats_url;
  bool standalone = false;
  int threads = 2;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) {
        std::cerr << "sidelog-sidecar: " << a << " needs a value\n";
        std::exit(2);
      }
      *out = argv[++i];
    };
    if (a == "--config") {
      value(&config_path);
    } else if (a == "--listen") {
      value(&listen);
    } else if (a == "--health-listen") {
      value(&health);
    } else if (a == "--data-dir") {
      value(&data_dir);
    } else if (a == "--log-level") {
      value(&level);
    } else if (a == "--nats") {
      value(&nats_url);
    } else if (a == "--standalone") {
      standalone = true;
    } else if (a == "--threads") {
      std::string t;
      value(&t);
      threads = std::atoi(t.c_str());
      if (threads < 1 || threads > 64) {
        std::cerr << "sidelog-sidecar: --threads must be 1-64\n";
        return 2;
      }
    } else if (a == "-h" || a == "--help") {
      Usage();
      return 0;
    } else {
      std::cerr << "sidelog-sidecar: unknown argument " << a << "\n";
      Usage();
      return 2;
    }
  }
  if (config_path.empty()) {
    Usage();
    return 2;
  }
  auto config = LoadSidecarConfig(config_path);
  if (!config.ok()) {
    std::cerr << "sidelog-sidecar: " << config.status().message() << "\n";
    return 2;
  }
  if (!listen.empty()) config->listen = listen;
  if (!health.empty()) config->health_listen = health;
  if (!data_dir.empty()) config->data_dir = data_dir;
  if (!level.empty()) config->log_level = level;
  if (!nats_url.empty()) {
    if (!config->nats) config->nats = NatsConfig{};
    config->nats->url = nats_url;
  }
  if (standalone) config->nats.reset();
  // The injected sidecar learns the app's port from the pod (annotation sidelog.dev/app-port
  // or the EventService's appPort) through this variable.
  if (const char* app_port = std::getenv("SIDELOG_APP_PORT"); app_port && *app_port) {
    const int port = std::atoi(app_port);
    if (port < 1 || port > 65535 || std::to_string(port) != app_port) {
      std::cerr << "sidelog-sidecar: SIDELOG_APP_PORT must be a port number, got " << app_port
                << "\n";
      return 2;
    }
    config->app_port = port;
  }
  log::Init("sidecar", config->log_level);
  LogConfigWarnings(config->warnings);

  BlockShutdownSignals();  // before any thread starts

  // A small pool is fast only if nothing blocks it; handlers never wait (see api.h).
  crossplat::threadpool::initialize_with_threads(static_cast<size_t>(threads));

  sidecar::Server server(*config);
  if (auto s = server.Start(); !s.ok()) {
    log::Error("cannot start", {{"error", s.message()}});
    std::cerr << "sidelog-sidecar: " << s.message() << "\n";
    return 1;
  }
  log::Info("ready", {{"listen", config->listen},
                      {"healthListen", config->health_listen},
                      {"dataDir", config->data_dir},
                      {"mode", config->nats ? "replicated" : "standalone"},
                      {"startupMs", std::chrono::duration<double, std::milli>(
                                        std::chrono::steady_clock::now() - started)
                                        .count()}});

  int sig = WaitForShutdownSignal();
  log::Info("shutting down", {{"signal", strsignal(sig)}});
  // Bounded: if draining takes longer than this, exit anyway (every acknowledged append is
  // already durable; unacknowledged ones were never promised).
  ExitIfShutdownTakesLonger(std::chrono::seconds(15));
  server.Stop();
  log::Info("stopped");
  return 0;
}
