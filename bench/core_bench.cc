// core_bench: the embedded event store's hot paths, each printed next to its ceiling measured in
// the same run on the same disk, with the ratio and the target.
//
//   appends/s, fsync on, 1 event per commit, 1 and 16 threads
//       ceiling: raw SQLite, the same bytes, one row per transaction, synchronous=FULL
//   events/s with 100 events per commit
//       ceiling: raw SQLite, the same rows, 100 per transaction
//   fold latency of entities of 10, 100 and 10,000 events, with and without snapshots
//
// Usage: core_bench --dir DIR [--seconds S]
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "sidelog/event_log.h"

namespace {

using namespace sidelog;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string g_dir = "/tmp";
int g_entities_per_thread = 64;  // --entities N: entities each writer thread rotates over
std::string g_only;              // --only append16|append100|fold: one scenario, for profiling
double g_seconds = 2.0;

const Json kPayload = {{"amount", 12.5}, {"currency", "EUR"}, {"note", "benchmark payload"}};

std::string FreshPath(const std::string& name) {
  std::string path = g_dir + "/" + name + ".db";
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path + s);
  return path;
}

// Raw SQLite: `rows_per_txn` rows of the same bytes per transaction, synchronous=FULL, WAL.
double RawSqliteRowsPerSecond(int rows_per_txn) {
  std::string path = FreshPath("raw");
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
               "CREATE TABLE raw (id INTEGER PRIMARY KEY, entity TEXT, type TEXT, data TEXT);",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO raw (entity, type, data) VALUES (?, ?, ?)", -1, &ins,
                     nullptr);
  const std::string data = kPayload.dump();
  int64_t rows = 0;
  auto start = Clock::now();
  while (Seconds(Clock::now() - start) < g_seconds) {
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    for (int i = 0; i < rows_per_txn; ++i) {
      std::string entity = "e" + std::to_string(rows % 64);
      sqlite3_bind_text(ins, 1, entity.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(ins, 2, "PaymentReceived", -1, SQLITE_STATIC);
      sqlite3_bind_text(ins, 3, data.c_str(), static_cast<int>(data.size()), SQLITE_STATIC);
      sqlite3_step(ins);
      sqlite3_reset(ins);
      ++rows;
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  double rate = static_cast<double>(rows) / Seconds(Clock::now() - start);
  sqlite3_finalize(ins);
  sqlite3_close(db);
  return rate;
}

std::unique_ptr<EventLog> OpenLog(const std::string& name, int snapshot_every = 100,
                                  std::shared_ptr<const Rules> rules = nullptr) {
  EventLogOptions o;
  o.path = FreshPath(name);
  o.durability = Durability::kFsync;
  o.snapshot_every = snapshot_every;
  auto log = EventLog::Open(o, {{"payments", std::move(rules)}});
  if (!log.ok()) {
    std::fprintf(stderr, "open: %s\n", log.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(log).value();
}

// Events/s through EventLog::Append from `threads` threads, `per_commit` events per commit,
// each thread on its own entities.
double AppendEventsPerSecond(int threads, int per_commit) {
  auto log = OpenLog("append");
  std::atomic<int64_t> events{0};
  std::atomic<bool> failed{false};
  auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      int64_t n = 0;
      while (Seconds(Clock::now() - start) < g_seconds) {
        AppendRequest r;
        r.stream = "payments";
        r.entity = "e" + std::to_string(t) + "-" + std::to_string(n % g_entities_per_thread);
        for (int i = 0; i < per_commit; ++i)
          r.events.push_back({"", "PaymentReceived", kPayload, {}});
        auto res = log->Append(std::move(r));
        if (!res.ok()) {
          if (!failed.exchange(true)) {
            std::fprintf(stderr, "append failed: %s\n", res.status().ToString().c_str());
          }
          return;
        }
        events += per_commit;
        ++n;
      }
    });
  }
  for (auto& th : pool) th.join();
  double rate = static_cast<double>(events.load()) / Seconds(Clock::now() - start);
  if (failed) std::fprintf(stderr, "warning: some appends failed\n");
  return rate;
}

struct Latency {
  double p50_us;
  double mean_us;
};

// State() latency of one entity of `n` events (increment reducer), K = snapshot_every.
Latency FoldLatency(int n, int snapshot_every) {
  auto rules = Rules::Compile(Json::parse(
      R"({"reducers":{"PaymentReceived":[{"op":"increment","path":"/paid","from":"/amount"},
                                         {"op":"set","path":"/currency","from":"/currency"}]}})"));
  auto log = OpenLog("fold", snapshot_every, *rules);
  for (int written = 0; written < n;) {
    AppendRequest r;
    r.stream = "payments";
    r.entity = "big";
    int batch = std::min(1000, n - written);
    for (int i = 0; i < batch; ++i) r.events.push_back({"", "PaymentReceived", kPayload, {}});
    if (!log->Append(std::move(r)).ok()) std::exit(1);
    written += batch;
  }
  std::vector<double> samples;
  auto start = Clock::now();
  while (samples.size() < 20000 && Seconds(Clock::now() - start) < g_seconds / 2) {
    auto t0 = Clock::now();
    auto s = log->State("payments", "big");
    samples.push_back(Seconds(Clock::now() - t0) * 1e6);
    if (!s.ok() || s->version != n) {
      std::fprintf(stderr, "fold returned the wrong version\n");
      std::exit(1);
    }
  }
  std::sort(samples.begin(), samples.end());
  double sum = 0;
  for (double v : samples) sum += v;
  return {samples[samples.size() / 2], sum / static_cast<double>(samples.size())};
}

void Row(const char* what, double value, const char* unit, double ceiling, const char* target,
         bool pass) {
  std::printf("%-44s %12.0f %-9s %12.0f %7.2fx  %-10s %s\n", what, value, unit, ceiling,
              ceiling > 0 ? value / ceiling : 0.0, target, pass ? "ok" : "MISSED");
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--dir") && i + 1 < argc) g_dir = argv[++i];
    if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) g_seconds = std::atof(argv[++i]);
    if (!std::strcmp(argv[i], "--only") && i + 1 < argc) g_only = argv[++i];
    if (!std::strcmp(argv[i], "--entities") && i + 1 < argc)
      g_entities_per_thread = std::atoi(argv[++i]);
  }
  if (g_only == "append16")
    return std::printf("%.0f appends/s\n", AppendEventsPerSecond(16, 1)) > 0 ? 0 : 1;
  if (g_only == "append100")
    return std::printf("%.0f events/s\n", AppendEventsPerSecond(1, 100)) > 0 ? 0 : 1;
  std::printf("core_bench: %.1f s per figure, files in %s, SQLite %s\n\n", g_seconds, g_dir.c_str(),
              sqlite3_libversion());
  std::printf("%-44s %12s %-9s %12s %8s  %-10s %s\n", "figure", "value", "unit", "ceiling", "ratio",
              "target", "");

  double raw1 = RawSqliteRowsPerSecond(1);
  double a1 = AppendEventsPerSecond(1, 1);
  double a16 = AppendEventsPerSecond(16, 1);
  Row("append, fsync, 1 event/commit, 1 thread", a1, "appends/s", raw1, "-", true);
  Row("append, fsync, 1 event/commit, 16 threads", a16, "appends/s", raw1, ">= 5x",
      a16 >= 5 * raw1);
  double raw100 = RawSqliteRowsPerSecond(100);
  double a100 = AppendEventsPerSecond(1, 100);
  Row("append, fsync, 100 events/commit, 1 thread", a100, "events/s", raw100, ">= 0.5x",
      a100 >= 0.5 * raw100);

  std::printf("\n%-44s %12s %12s  %-10s\n", "fold latency (State of one entity)", "p50 us",
              "mean us", "target");
  for (int n : {10, 100, 10000}) {
    for (int k : {0, 100}) {
      Latency l = FoldLatency(n, k);
      char what[96];
      std::snprintf(what, sizeof what, "%d events, %s", n,
                    k ? "snapshots every 100" : "no snapshots");
      bool has_target = n == 10000 && k > 0;
      std::printf("%-44s %12.1f %12.1f  %-10s %s\n", what, l.p50_us, l.mean_us,
                  has_target ? "< 1000 us" : "-",
                  has_target ? (l.p50_us < 1000 ? "ok" : "MISSED") : "");
    }
  }
  return 0;
}
