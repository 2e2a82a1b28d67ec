// sidelog-consolidator: folds the events of a sidecar's streams into SQL tables and serves
// named read-only queries over them.
//
//   sidelog-consolidator --config FILE [--listen HOST:PORT] [--log-level LEVEL] [--threads N]
//       Folds and serves until SIGTERM/SIGINT, then finishes the batches in flight and exits 0.
//       Exits 2 on a bad config (file:line: field: message), 1 when it cannot start.
//   sidelog-consolidator rebuild --config FILE
//       Rebuilds the read model from position 0. When a consolidator serves this config, asks
//       it (POST /v1/rebuild) and follows its progress; otherwise rebuilds here and swaps the
//       result in. Exits 0 when the new view is live.
#include <pplx/threadpool.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <iostream>
#include <thread>

#include "client.h"
#include "config.h"
#include "consolidator.h"
#include "server.h"
#include "sidelog/log.h"
#include "sidelog/shutdown.h"

namespace {

using namespace sidelog;
using namespace sidelog::consolidator;

void Usage() {
  std::cerr << "usage: sidelog-consolidator --config FILE [--listen HOST:PORT] [--log-level "
               "LEVEL] [--threads N]\n"
               "       sidelog-consolidator rebuild --config FILE\n";
}

// SIGTERM and SIGINT, taken by one thread with sigwait and turned into a flag others wait on.
class Signals {
 public:
  Signals() {
    BlockShutdownSignals();  // before any other thread starts
    std::thread([this] {
      int sig = WaitForShutdownSignal();
      {
        std::lock_guard<std::mutex> lock(mu_);
        signal_ = sig;
      }
      cv_.notify_all();
    }).detach();
  }
  // Waits up to `timeout` for a signal; returns it, or 0.
  int Wait(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return signal_ != 0; });
    return signal_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int signal_ = 0;
};

// The URL a local client reaches `listen` at.
std::string ApiUrl(const std::string& listen) {
  std::string host = listen.substr(0, listen.rfind(':'));
  std::string port = listen.substr(listen.rfind(':') + 1);
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  if (host == "::" || host == "[::]") host = "[::1]";
  return "http://" + host + ":" + port;
}

std::string ProgressLine(const Json& r) {
  char pct[16];
  std::snprintf(pct, sizeof pct, "%.0f%%", 100.0 * r.value("progress", 0.0));
  return "rebuild: " + r.value("state", std::string("building")) + ", " +
         std::to_string(r.value("eventsDone", int64_t{0})) + " of " +
         std::to_string(r.value("eventsTotal", int64_t{0})) + " events (" + pct + ")" +
         (r.contains("detail") ? "; " + r.value("detail", "") : "");
}

// Asks a running consolidator to rebuild and follows it. Returns -1 when none answers.
int RebuildRemotely(const ConsolidatorConfig& config, Signals& signals) {
  cli::Client client(ApiUrl(config.listen));
  std::string error;
  auto resp = client.Send("POST", "/v1/rebuild", nullptr, {}, &error);
  if (resp.status == 0) return -1;
  if (resp.status != 202 && resp.status != 409) {
    std::cerr << "sidelog-consolidator: " << cli::ProblemText(resp) << "\n";
    return 1;
  }
  std::cerr << "rebuild requested from the consolidator at " << client.base_url() << "\n";
  std::string last;
  while (signals.Wait(std::chrono::milliseconds(500)) == 0) {
    auto status = client.Send("GET", "/v1/status", nullptr, {}, &error);
    if (status.status != 200) {
      std::cerr << "sidelog-consolidator: " << (status.status ? cli::ProblemText(status) : error)
                << "\n";
      return 1;
    }
    const Json& r = status.body["rebuild"];
    std::string line = ProgressLine(r);
    if (line != last) std::cerr << line << "\n";
    last = line;
    std::string state = r.value("state", "");
    if (state == "done") return 0;
    if (state == "failed") {
      std::cerr << "sidelog-consolidator: rebuild failed: " << r.value("error", "") << "\n";
      return 1;
    }
    if (state == "cancelled") {
      std::cerr << "sidelog-consolidator: the rebuild was cancelled\n";
      return 1;
    }
  }
  return 1;
}

int RunRebuild(const ConsolidatorConfig& config, Signals& signals) {
  if (int rc = RebuildRemotely(config, signals); rc >= 0) return rc;
  Consolidator consolidator(config);
  std::string last;
  Status st = consolidator.RebuildOffline([&](const Json& progress) {
    Json r = progress;
    r["state"] = "building";
    std::string line = ProgressLine(r);
    if (line != last) std::cerr << line << "\n";
    last = line;
    return signals.Wait(std::chrono::milliseconds(0)) == 0;
  });
  if (!st.ok()) {
    std::cerr << "sidelog-consolidator: rebuild failed: " << st.message() << "\n";
    return 1;
  }
  std::cerr << "rebuild: done; the new view is live\n";
  return 0;
}

int Serve(ConsolidatorConfig config, Signals& signals, const std::string& listen) {
  if (!listen.empty()) config.listen = listen;
  Consolidator consolidator(config);
  // The API first: a standby answers /livez and /v1/status (and is not ready) while it waits.
  Server server(&consolidator, config.listen);
  if (auto st = server.Start(); !st.ok()) {
    log::Error("cannot start", {{"error", st.message()}});
    std::cerr << "sidelog-consolidator: " << st.message() << "\n";
    return 1;
  }
  bool said_standby = false;
  for (;;) {
    Status st = consolidator.Start();
    if (st.ok()) break;
    if (st.code() == Status::Code::kInvalid) {
      std::cerr << "sidelog-consolidator: " << st.message() << "\n";
      return 2;
    }
    // Another replica holds the lock (this one is a standby), the database is starting, or a
    // killed predecessor's lock lingers for a moment (PostgreSQL notices the closed session).
    if (st.code() != Status::Code::kUnavailable && st.code() != Status::Code::kConflict) {
      log::Error("cannot start", {{"error", st.message()}});
      std::cerr << "sidelog-consolidator: " << st.message() << "\n";
      return 1;
    }
    if (st.code() == Status::Code::kConflict) {
      if (!said_standby)
        log::Info("standing by: another replica folds", {{"reason", st.message()}});
      said_standby = true;
    } else {
      log::Error("cannot start yet; retrying in 1 s", {{"error", st.message()}});
    }
    if (signals.Wait(std::chrono::seconds(1)) != 0) {
      server.Stop();
      return 0;
    }
  }
  if (said_standby) log::Info("took over: this replica folds now");
  log::Info("ready", {{"listen", config.listen}, {"name", config.name}});
  int sig = 0;
  while ((sig = signals.Wait(std::chrono::hours(1))) == 0) {
  }
  log::Info("shutting down", {{"signal", strsignal(sig)}});
  ExitIfShutdownTakesLonger(std::chrono::seconds(15));  // a batch in flight commits or rolls back
  server.Stop();
  consolidator.Stop();
  log::Info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string command = "run", config_path, listen, level;
  int threads = 8;
  int i = 1;
  if (argc > 1 && argv[1][0] != '-') command = argv[i++];
  for (; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) {
        std::cerr << "sidelog-consolidator: " << a << " needs a value\n";
        std::exit(2);
      }
      *out = argv[++i];
    };
    if (a == "--config") {
      value(&config_path);
    } else if (a == "--listen") {
      value(&listen);
    } else if (a == "--log-level") {
      value(&level);
    } else if (a == "--threads") {
      std::string t;
      value(&t);
      threads = std::atoi(t.c_str());
      if (threads < 2 || threads > 64) {
        std::cerr << "sidelog-consolidator: --threads must be 2-64\n";
        return 2;
      }
    } else if (a == "-h" || a == "--help") {
      Usage();
      return 0;
    } else {
      std::cerr << "sidelog-consolidator: unknown argument " << a << "\n";
      Usage();
      return 2;
    }
  }
  if (config_path.empty() || (command != "run" && command != "rebuild")) {
    Usage();
    return 2;
  }
  Signals signals;  // before any thread
  auto config = LoadConsolidatorConfig(config_path);
  if (!config.ok()) {
    std::cerr << "sidelog-consolidator: " << config.status().message() << "\n";
    return 2;
  }
  log::Init("consolidator", level.empty() ? config->log_level : level);
  LogConfigWarnings(config->warnings);
  crossplat::threadpool::initialize_with_threads(static_cast<size_t>(threads));
  if (command == "rebuild") return RunRebuild(*config, signals);
  return Serve(std::move(config).value(), signals, listen);
}
