// delivery_bench: push delivery from a standalone sidecar to a trivial app (it answers 204 at
// once), next to its ceiling: the same app fed by the benchmark itself, which reads the stream
// API in a tight loop and POSTs each event over as many keep-alive connections as the
// sidecar's maxInFlight. Then the latency from sending an append to the app receiving it, at a
// steady rate.
//
//   delivery_bench --sidecar BIN [--events N] [--entities N] [--in-flight N] [--rate N]
//                  [--seconds N]
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client.h"

namespace {

using Clock = std::chrono::steady_clock;
using sidelog::Json;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// A TCP socket bound to an ephemeral loopback port; returns the port.
int BindLoopback(int fd) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// The trivial app: one thread per connection, 204 to every request, counting them and noting
// when each ce-id arrived.
class App {
 public:
  App() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    port_ = BindLoopback(fd_);
    listen(fd_, 256);
    acceptor_ = std::thread([this] {
      for (;;) {
        int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        std::thread([this, c] { Serve(c); }).detach();
      }
    });
  }
  ~App() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    acceptor_.join();
  }
  int port() const { return port_; }
  int64_t count() const { return count_.load(); }
  void set_record(bool r) { record_ = r; }
  std::map<std::string, Clock::time_point> arrivals() {
    std::lock_guard<std::mutex> lock(mu_);
    return arrivals_;
  }

 private:
  void Serve(int c) {
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::string buf;
    char chunk[65536];
    for (;;) {
      size_t head_end;
      while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = recv(c, chunk, sizeof chunk, 0);
        if (n <= 0) {
          close(c);
          return;
        }
        buf.append(chunk, static_cast<size_t>(n));
      }
      size_t length = 0;
      std::string id;
      for (size_t p = buf.find("\r\n") + 2; p < head_end;) {
        size_t e = buf.find("\r\n", p);
        std::string line = buf.substr(p, e - p);
        for (size_t i = 0; i < line.size() && line[i] != ':'; ++i) line[i] = std::tolower(line[i]);
        if (line.rfind("content-length:", 0) == 0) length = std::stoul(line.substr(15));
        if (line.rfind("ce-id:", 0) == 0) id = line.substr(7);
        p = e + 2;
      }
      while (buf.size() < head_end + 4 + length) {
        ssize_t n = recv(c, chunk, sizeof chunk, 0);
        if (n <= 0) {
          close(c);
          return;
        }
        buf.append(chunk, static_cast<size_t>(n));
      }
      buf.erase(0, head_end + 4 + length);
      if (record_) {
        std::lock_guard<std::mutex> lock(mu_);
        arrivals_.emplace(id, Clock::now());
      }
      count_++;
      static const char kReply[] = "HTTP/1.1 204 No Content\r\n\r\n";
      send(c, kReply, sizeof kReply - 1, MSG_NOSIGNAL);
    }
  }

  int fd_, port_;
  std::thread acceptor_;
  std::atomic<int64_t> count_{0};
  std::atomic<bool> record_{false};
  std::mutex mu_;
  std::map<std::string, Clock::time_point> arrivals_;
};

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  const int port = BindLoopback(fd);
  close(fd);
  return port;
}

struct Sidecar {
  std::string bin, dir;
  int port = FreePort(), health = FreePort();
  pid_t pid = -1;

  void Start(const std::string& deliver, int app_port) {
    std::ofstream(dir + "/sidecar.yaml")
        << "service: bench\nlisten: 127.0.0.1:" << port << "\nhealthListen: 127.0.0.1:" << health
        << "\ndataDir: " << dir << "/data\nappPort: " << app_port
        << "\nstreams:\n  - name: orders\n    access: write\n"
        << (deliver.empty() ? "" : "    deliver: " + deliver + "\n");
    pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      freopen((dir + "/sidecar.log").c_str(), "a", stderr);
      execl(bin.c_str(), "sidelog-sidecar", "--config", (dir + "/sidecar.yaml").c_str(),
            "--log-level", "warn", nullptr);
      _exit(127);
    }
    sidelog::cli::Client h("http://127.0.0.1:" + std::to_string(health));
    for (int i = 0; i < 500 && h.Send("GET", "/readyz").status != 200; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  void Stop() {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
    pid = -1;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

// Appends `events` events over `entities` entities, in commits of `per_commit`.
void Load(const Sidecar& s, int events, int entities, int per_commit) {
  std::vector<std::thread> threads;
  const int kThreads = 4;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      sidelog::cli::Client c(s.url());
      for (int k = t; k * per_commit < events; k += kThreads) {
        Json list = Json::array();
        for (int i = 0; i < per_commit; ++i) {
          list.push_back({{"type", "ItemAdded"}, {"data", {{"n", k * per_commit + i}}}});
        }
        c.Send("POST", "/v1/streams/orders/entities/e" + std::to_string(k % entities) + "/events",
               {{"events", list}});
      }
    });
  }
  for (auto& th : threads) th.join();
}

// Delivers the backlog through the sidecar; events/s.
double Push(Sidecar& s, App& app, const std::string& deliver, int events) {
  std::filesystem::remove(s.dir + "/data/subscriptions.db");
  std::filesystem::remove(s.dir + "/data/subscriptions.db-wal");
  const int64_t before = app.count();
  const auto start = Clock::now();
  s.Start(deliver, app.port());
  while (app.count() - before < events && Seconds(Clock::now() - start) < 120) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const double rate = (app.count() - before) / Seconds(Clock::now() - start);
  s.Stop();
  return rate;
}

// The ceiling: the benchmark reads the stream API and posts each event to the app itself.
double Ceiling(Sidecar& s, App& app, int events, int connections) {
  s.Start("", app.port());
  std::vector<Json> all;
  sidelog::cli::Client c(s.url());
  const auto start = Clock::now();
  int64_t from = 0;
  std::vector<std::thread> posters;
  std::vector<std::vector<std::string>> queues(static_cast<size_t>(connections));
  // Read every page, then post each event: reading is part of the ceiling's time.
  while (static_cast<int>(all.size()) < events) {
    auto page = c.Send("GET", "/v1/streams/orders/events?limit=1000&from=" + std::to_string(from));
    if (page.status != 200 || page.body["events"].empty()) break;
    for (auto& e : page.body["events"]) all.push_back(e);
    from = page.body["next"].get<int64_t>();
  }
  const int64_t before = app.count();
  for (int t = 0; t < connections; ++t) {
    posters.emplace_back([&, t] {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<uint16_t>(app.port()));
      connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      char reply[256];
      for (size_t i = static_cast<size_t>(t); i < all.size();
           i += static_cast<size_t>(connections)) {
        const Json& e = all[i];
        const std::string body = e["data"].dump();
        std::string req =
            "POST /events HTTP/1.1\r\nHost: app\r\nce-specversion: 1.0\r\nce-id: " +
            e["id"].get<std::string>() + "\r\nce-type: " + e["type"].get<std::string>() +
            "\r\nce-subject: " + e["subject"].get<std::string>() +
            "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\n\r\n" + body;
        send(fd, req.data(), req.size(), MSG_NOSIGNAL);
        recv(fd, reply, sizeof reply, 0);  // "HTTP/1.1 204 No Content\r\n\r\n" in one segment
      }
      close(fd);
    });
  }
  for (auto& p : posters) p.join();
  const double rate = (app.count() - before) / Seconds(Clock::now() - start);
  s.Stop();
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  std::string bin;
  int events = 50000, entities = 1000, in_flight = 16, rate = 1000, seconds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--sidecar") bin = v;
    if (a == "--events") events = std::stoi(v);
    if (a == "--entities") entities = std::stoi(v);
    if (a == "--in-flight") in_flight = std::stoi(v);
    if (a == "--rate") rate = std::stoi(v);
    if (a == "--seconds") seconds = std::stoi(v);
  }
  if (bin.empty()) {
    std::cerr << "usage: delivery_bench --sidecar BIN [--events N] [--entities N] [--in-flight N] "
                 "[--rate N] [--seconds N]\n";
    return 2;
  }
  char tmpl[] = "/tmp/sidelog-delivery-bench.XXXXXX";
  Sidecar s{bin, mkdtemp(tmpl)};
  App app;
  s.Start("", app.port());
  const auto load_start = Clock::now();
  Load(s, events, entities, 10);
  std::printf("loaded %d events over %d entities (commits of 10) in %.1f s\n", events, entities,
              Seconds(Clock::now() - load_start));
  s.Stop();

  const std::string flight = "maxInFlight: " + std::to_string(in_flight);
  const double ceiling = Ceiling(s, app, events, in_flight);
  const double none = Push(s, app, "{path: /events, ordering: none, " + flight + "}", events);
  const double entity = Push(s, app, "{path: /events, ordering: entity, " + flight + "}", events);
  std::printf(
      "%-58s %10.0f events/s\n",
      ("ceiling: stream API read + POST per event, " + std::to_string(in_flight) + " connections")
          .c_str(),
      ceiling);
  std::printf("%-58s %10.0f events/s  %.2fx ceiling\n", "push delivery, ordering: none", none,
              none / ceiling);
  std::printf(
      "%-58s %10.0f events/s  %.2fx ceiling\n",
      ("push delivery, ordering: entity (" + std::to_string(entities) + " entities)").c_str(),
      entity, entity / ceiling);

  // Latency: appends at `rate`/s, from sending each append to the app receiving the event.
  std::filesystem::remove(s.dir + "/data/subscriptions.db");
  std::filesystem::remove(s.dir + "/data/subscriptions.db-wal");
  const int64_t backlog = app.count() + events;
  s.Start("{path: /events, " + flight + "}", app.port());
  while (app.count() < backlog) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  app.set_record(true);
  // Four appenders share the schedule: one append at a time would wait for each fsync.
  std::map<std::string, Clock::time_point> acked;
  std::mutex acked_mu;
  const int total = rate * seconds;
  const auto t0 = Clock::now();
  std::vector<std::thread> appenders;
  for (int t = 0; t < 4; ++t) {
    appenders.emplace_back([&, t] {
      sidelog::cli::Client c(s.url());
      for (int i = t; i < total; i += 4) {
        std::this_thread::sleep_until(t0 + std::chrono::microseconds(1000000LL * i / rate));
        const std::string id = "lat-" + std::to_string(i);
        const auto sent = Clock::now();
        auto r = c.Send(
            "POST", "/v1/streams/orders/entities/e" + std::to_string(i % entities) + "/events",
            {{"events", Json::array({{{"id", id}, {"type", "Tick"}, {"data", {{"i", i}}}}})}});
        std::lock_guard<std::mutex> lock(acked_mu);
        if (r.status == 201) {
          acked.emplace(id, sent);
        } else if (i < 4) {
          std::fprintf(stderr, "append answered %d: %s\n", r.status, r.body.dump().c_str());
        }
      }
    });
  }
  for (auto& a : appenders) a.join();
  const double achieved = total / Seconds(Clock::now() - t0);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto arrivals = app.arrivals();
  if (acked.empty() || arrivals.empty()) {
    std::fprintf(stderr, "latency run: %zu appends answered 201, %zu arrivals recorded\n",
                 acked.size(), arrivals.size());
  }
  std::vector<double> ms;
  for (const auto& [id, at] : acked) {
    auto it = arrivals.find(id);
    if (it != arrivals.end()) ms.push_back(std::max(0.0, Seconds(it->second - at) * 1000));
  }
  s.Stop();
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) {
    return ms.empty() ? 0 : ms[static_cast<size_t>(p * (ms.size() - 1))];
  };
  std::printf(
      "latency, append sent -> app received, %.0f events/s (%zu events): p50 %.2f ms, p99 "
      "%.2f ms, max %.2f ms\n",
      achieved, ms.size(), pct(0.5), pct(0.99), ms.empty() ? 0 : ms.back());
  std::filesystem::remove_all(s.dir);
  return 0;
}
