// consolidator_bench: how fast the consolidator folds events into SQLite and PostgreSQL with a
// typical upsert handler, next to the ceiling measured in the same run: the same statement with
// the same values, executed directly through the C API in transactions of the same size.
//
//   projection   Projection::Apply: parameters bound from each event's JSON, handler lookup,
//                one checkpoint row per batch, one transaction per batch
//   end to end   a sidecar holding the events, read by a Consolidator from position 0
//                (catch-up pages over HTTP, then the projection)
//   ceiling      raw sqlite3_step / PQexecPrepared of the upsert, no checkpoint
//   lag          a running consolidator following a sidecar over SSE into SQLite, appends at
//                1,000 events/s: time from the append's 201 to its row being visible to another
//                SQLite connection (p50/p99)
//   rebuild      `sidelog-consolidator rebuild` of 1M events (--rebuild-events) into SQLite
//
// Usage: consolidator_bench [--events N] [--entities K] [--batch B] [--pg CONNINFO]
//                           [--rebuild-events N] [--lag-seconds S]
//   Without --pg, a throwaway PostgreSQL is started with scripts/postgres.
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
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
#include <string>
#include <thread>
#include <vector>

#include "client.h"
#include "consolidator.h"
#include "projection.h"
#include "target.h"

namespace {

using namespace sidelog;
using namespace sidelog::consolidator;
using Clock = std::chrono::steady_clock;

int g_events = 100000;
int g_entities = 1000;
int g_batch = 500;
int g_rebuild_events = 1000000;
int g_lag_seconds = 10;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The handler every figure runs, in both dialects (upsert syntax is shared).
constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS balances (id TEXT PRIMARY KEY, total DOUBLE PRECISION NOT NULL, "
    "n BIGINT NOT NULL)";
constexpr const char* kHandler =
    "INSERT INTO balances (id, total, n) VALUES (:entity, :data.amount, 1) ON CONFLICT (id) DO "
    "UPDATE SET total = balances.total + excluded.total, n = balances.n + 1";

std::string Entity(int i) { return "account-" + std::to_string(i % g_entities); }
double Amount(int i) { return (i % 100) + 0.25; }

std::string ConfigYaml(const std::string& target, const std::string& sidecar_url) {
  return "name: bench\nsidecar: {url: " + sidecar_url +
         "}\nlisten: 127.0.0.1:0\n"
         "sources: [{stream: payments}]\ntarget:\n  " +
         target + "\n" + "batch: {maxEvents: " + std::to_string(g_batch) +
         ", maxDelay: 20ms}\n"
         "schema: \"" +
         kSchema +
         "\"\n"
         "handlers:\n  - event: payments/PaymentReceived\n    sql: \"" +
         kHandler + "\"\n";
}

// Projection::Apply over pre-built events; events/s.
double ProjectionEventsPerSecond(const std::string& target) {
  auto config = ParseConsolidatorConfig(ConfigYaml(target, "http://127.0.0.1:1"), "bench");
  if (!config.ok()) {
    std::fprintf(stderr, "config: %s\n", config.status().message().c_str());
    return 0;
  }
  auto t = Target::FromConfig(*config);
  auto projection = Projection::Open(*config, [&] { return t->OpenWriter(Slot::kLive); });
  if (!projection.ok()) {
    std::fprintf(stderr, "open: %s\n", projection.status().message().c_str());
    return 0;
  }
  std::vector<Batch> batches;
  for (int i = 0; i < g_events; i += g_batch) {
    Batch b{"payments", {}, {}};
    for (int k = i; k < std::min(g_events, i + g_batch); ++k) {
      StoredEvent e;
      e.id = "e" + std::to_string(k);
      e.stream = "payments";
      e.type = "PaymentReceived";
      e.entity = Entity(k);
      e.data = {{"amount", Amount(k)}, {"currency", "EUR"}};
      e.position = k + 1;
      e.version = 1;
      b.events.push_back(std::move(e));
    }
    b.end = Cursor{b.events.back().position, -1};
    batches.push_back(std::move(b));
  }
  Checkpoint cp;
  auto start = Clock::now();
  for (const auto& b : batches) {
    ApplyResult r = (*projection)->Apply(b, cp);
    if (!r.error.ok()) {
      std::fprintf(stderr, "apply: %s\n", r.error.message().c_str());
      return 0;
    }
    cp = r.checkpoint;
  }
  return g_events / Seconds(Clock::now() - start);
}

// The ceiling on SQLite: the same upsert through sqlite3_step, same batches, same pragmas.
double RawSqliteEventsPerSecond(const std::string& path) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", nullptr, nullptr,
               nullptr);
  sqlite3_exec(db, kSchema, nullptr, nullptr, nullptr);
  std::string sql = kHandler;
  sql.replace(sql.find(":entity"), 7, "?1");
  sql.replace(sql.find(":data.amount"), 12, "?2");
  sqlite3_stmt* up = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &up, nullptr) != SQLITE_OK) {
    std::fprintf(stderr, "raw sqlite: %s\n", sqlite3_errmsg(db));
    return 0;
  }
  std::vector<std::string> entities;
  entities.reserve(static_cast<size_t>(g_events));
  for (int i = 0; i < g_events; ++i) entities.push_back(Entity(i));
  auto start = Clock::now();
  for (int i = 0; i < g_events; i += g_batch) {
    sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    for (int k = i; k < std::min(g_events, i + g_batch); ++k) {
      sqlite3_bind_text(up, 1, entities[k].data(), static_cast<int>(entities[k].size()),
                        SQLITE_STATIC);
      sqlite3_bind_double(up, 2, Amount(k));
      sqlite3_step(up);
      sqlite3_reset(up);
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  double rate = g_events / Seconds(Clock::now() - start);
  sqlite3_finalize(up);
  sqlite3_close(db);
  return rate;
}

// The ceiling on PostgreSQL: the same upsert through PQexecPrepared, same batches.
double RawPostgresEventsPerSecond(const std::string& conninfo, const std::string& schema) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::fprintf(stderr, "raw postgres: %s", PQerrorMessage(c));
    return 0;
  }
  auto exec = [&](const std::string& sql) { PQclear(PQexec(c, sql.c_str())); };
  exec("SET client_min_messages = warning");
  exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE");
  exec("CREATE SCHEMA " + schema);
  exec("SET search_path TO " + schema);
  exec(kSchema);
  std::string sql = kHandler;
  sql.replace(sql.find(":entity"), 7, "$1");
  sql.replace(sql.find(":data.amount"), 12, "$2");
  PQclear(PQprepare(c, "up", sql.c_str(), 2, nullptr));
  std::vector<std::string> entities, amounts;
  for (int i = 0; i < g_events; ++i) {
    entities.push_back(Entity(i));
    amounts.push_back(Json(Amount(i)).dump());
  }
  auto start = Clock::now();
  for (int i = 0; i < g_events; i += g_batch) {
    exec("BEGIN");
    for (int k = i; k < std::min(g_events, i + g_batch); ++k) {
      const char* values[2] = {entities[k].c_str(), amounts[k].c_str()};
      PGresult* r = PQexecPrepared(c, "up", 2, values, nullptr, nullptr, 0);
      if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        std::fprintf(stderr, "raw postgres: %s", PQerrorMessage(c));
        PQclear(r);
        return 0;
      }
      PQclear(r);
    }
    exec("COMMIT");
  }
  double rate = g_events / Seconds(Clock::now() - start);
  PQfinish(c);
  return rate;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return 0;
  }
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// A standalone sidecar holding `count` PaymentReceived events in commits of 100.
class FilledSidecar {
 public:
  FilledSidecar(const std::string& dir, int count) : port_(FreePort()) {
    std::ofstream(dir + "/sidecar.yaml")
        << "service: bench\nnamespace: bench\nlisten: 127.0.0.1:" << port_
        << "\nhealthListen: 127.0.0.1:" << FreePort() << "\ndataDir: " << dir
        << "/sidecar\ndurability: normal\nstreams: [{name: payments, access: write}]\n";
    std::string config = dir + "/sidecar.yaml", log = dir + "/sidecar.log";
    pid_ = fork();
    if (pid_ == 0) {
      if (!freopen(log.c_str(), "a", stderr)) _exit(126);
      execl(SIDELOG_SIDECAR_BIN, "sidelog-sidecar", "--config", config.c_str(), nullptr);
      _exit(127);
    }
    cli::Client client(url());
    for (int i = 0; i < 500 && client.Send("GET", "/readyz").status != 200; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (int i = 0; i < count; i += 100) {
      Json events = Json::array();
      for (int k = i; k < std::min(count, i + 100); ++k) {
        events.push_back(
            {{"type", "PaymentReceived"}, {"data", {{"amount", Amount(k)}, {"currency", "EUR"}}}});
      }
      // Each commit is one entity's; spread commits over the entities.
      auto r = client.Send("POST", "/v1/streams/payments/entities/" + Entity(i / 100) + "/events",
                           {{"events", events}});
      if (r.status != 201) {
        std::fprintf(stderr, "filling the sidecar: %s\n", cli::ProblemText(r).c_str());
        ok_ = false;
        return;
      }
    }
  }
  ~FilledSidecar() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  bool ok() const { return ok_; }

 private:
  int port_;
  pid_t pid_ = -1;
  bool ok_ = true;
};

// A Consolidator reading every event of the sidecar from position 0; events/s.
double EndToEndEventsPerSecond(const FilledSidecar& sidecar, const std::string& target) {
  auto config = ParseConsolidatorConfig(ConfigYaml(target, sidecar.url()), "bench");
  if (!config.ok()) return 0;
  Consolidator c(*config);
  auto start = Clock::now();
  if (auto st = c.Start(); !st.ok()) {
    std::fprintf(stderr, "start: %s\n", st.message().c_str());
    return 0;
  }
  while (Seconds(Clock::now() - start) < 300) {
    if (c.StatusJson()["sources"][0]["events"].get<int64_t>() >= g_events) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  double rate = g_events / Seconds(Clock::now() - start);
  c.Stop();
  return rate;
}

// Appends `rate` events/s (one per append) for `seconds` to a sidecar that a running
// consolidator follows into SQLite, and times each event from its 201 to its row being visible
// to another connection. Prints p50/p99/max in ms.
void Lag(const std::string& dir, int rate, int seconds) {
  const std::string sdir = dir + "/lag";
  std::filesystem::create_directories(sdir);
  FilledSidecar sidecar(sdir, 0);
  if (!sidecar.ok()) return;
  const std::string db = sdir + "/lag.db";
  auto config = ParseConsolidatorConfig(
      "name: lag\nsidecar: {url: " + sidecar.url() +
          "}\nlisten: 127.0.0.1:0\nsources: [{stream: payments}]\ntarget:\n  sqlite: {path: " + db +
          "}\nbatch: {maxEvents: 500, maxDelay: 5ms}\n"
          "schema: \"CREATE TABLE IF NOT EXISTS seen (n INTEGER PRIMARY KEY)\"\n"
          "handlers:\n  - event: payments/PaymentReceived\n    sql: \"INSERT INTO seen (n) VALUES "
          "(:data.n)\"\n",
      "lag");
  if (!config.ok()) {
    std::fprintf(stderr, "lag config: %s\n", config.status().message().c_str());
    return;
  }
  Consolidator c(*config);
  if (auto st = c.Start(); !st.ok()) {
    std::fprintf(stderr, "lag start: %s\n", st.message().c_str());
    return;
  }
  const int total = rate * seconds;
  std::vector<Clock::time_point> acked(static_cast<size_t>(total)),
      seen(static_cast<size_t>(total));
  std::atomic<int> sent{0};
  std::atomic<bool> done{false};
  // The reader: another SQLite connection polling the highest row, as a reader of the view.
  std::thread reader([&] {
    sqlite3* rdb = nullptr;
    sqlite3_open_v2(db.c_str(), &rdb, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* q = nullptr;
    int64_t have = 0;
    while (!done && have < total) {
      if (!q && sqlite3_prepare_v2(rdb, "SELECT max(n) FROM seen", -1, &q, nullptr) != SQLITE_OK) {
        q = nullptr;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      int64_t max = 0;
      if (sqlite3_step(q) == SQLITE_ROW) max = sqlite3_column_int64(q, 0);
      sqlite3_reset(q);
      const auto now = Clock::now();
      for (; have < max && have < total; ++have) seen[static_cast<size_t>(have)] = now;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    sqlite3_finalize(q);
    sqlite3_close(rdb);
  });
  {
    cli::Client client(sidecar.url());
    const auto start = Clock::now();
    for (int i = 0; i < total; ++i) {
      std::this_thread::sleep_until(start + std::chrono::microseconds(1000000LL * i / rate));
      Json body = {{"events", Json::array({{{"type", "PaymentReceived"},
                                            {"data", {{"n", i + 1}, {"amount", 1}}}}})}};
      auto r = client.Send("POST", "/v1/streams/payments/entities/" + Entity(i) + "/events", body);
      acked[static_cast<size_t>(i)] = Clock::now();
      if (r.status != 201) {
        std::fprintf(stderr, "lag append: %s\n", cli::ProblemText(r).c_str());
        break;
      }
      sent = i + 1;
    }
  }
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline && seen[static_cast<size_t>(sent - 1)] == Clock::time_point{}) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  done = true;
  reader.join();
  c.Stop();
  std::vector<double> lags;
  for (int i = 0; i < sent; ++i) {
    if (seen[static_cast<size_t>(i)] == Clock::time_point{}) continue;
    lags.push_back(std::max(
        0.0, Seconds(seen[static_cast<size_t>(i)] - acked[static_cast<size_t>(i)]) * 1000));
  }
  std::sort(lags.begin(), lags.end());
  auto pct = [&](double p) {
    return lags.empty() ? 0.0 : lags[static_cast<size_t>(p * (lags.size() - 1))];
  };
  std::printf(
      "%-44s p50 %.1f ms, p99 %.1f ms, max %.1f ms (%zu of %d events seen; target p99 < 50 ms)\n",
      ("SQLite: lag, append 201 -> row visible @" + std::to_string(rate) + "/s").c_str(), pct(0.5),
      pct(0.99), lags.empty() ? 0.0 : lags.back(), lags.size(), sent.load());
}

// `sidelog-consolidator rebuild`'s path (Consolidator::RebuildOffline: a fresh file, folded from
// position 0, swapped in) over `count` events held by a sidecar; seconds.
void RebuildBench(const std::string& dir, int count) {
  const std::string rdir = dir + "/rebuild";
  std::filesystem::create_directories(rdir);
  auto fill_start = Clock::now();
  FilledSidecar sidecar(rdir, count);
  if (!sidecar.ok()) return;
  const double fill = Seconds(Clock::now() - fill_start);
  auto config = ParseConsolidatorConfig(
      ConfigYaml("sqlite: {path: " + rdir + "/view.db}", sidecar.url()), "rebuild");
  if (!config.ok()) return;
  Consolidator c(*config);
  auto start = Clock::now();
  Status st = c.RebuildOffline([](const Json&) { return true; });
  const double took = Seconds(Clock::now() - start);
  if (!st.ok()) {
    std::fprintf(stderr, "rebuild: %s\n", st.message().c_str());
    return;
  }
  std::printf("%-44s %.1f s (%.0f events/s; target < 30 s; filling the sidecar took %.1f s)\n",
              ("SQLite: rebuild of " + std::to_string(count) + " events").c_str(), took,
              count / took, fill);
}

void Row(const char* what, double value, double ceiling) {
  std::printf("%-44s %12.0f %-9s %12.0f %7.2fx\n", what, value, "events/s", ceiling,
              ceiling > 0 ? value / ceiling : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  std::string pg;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--events") && i + 1 < argc) g_events = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--entities") && i + 1 < argc) g_entities = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--batch") && i + 1 < argc) g_batch = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--pg") && i + 1 < argc) pg = argv[++i];
    if (!std::strcmp(argv[i], "--rebuild-events") && i + 1 < argc)
      g_rebuild_events = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--lag-seconds") && i + 1 < argc)
      g_lag_seconds = std::atoi(argv[++i]);
  }
  signal(SIGPIPE, SIG_IGN);
  char tmpl[] = "/tmp/sidelog-consbench.XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const bool own_pg = pg.empty();
  const std::string script = std::string(SIDELOG_SOURCE_DIR) + "/scripts/postgres";
  if (own_pg) {
    int port = FreePort();
    std::string cmd = script + " start " + dir + "/pg " + std::to_string(port) + " > /dev/null";
    if (std::system(cmd.c_str()) != 0) {
      std::fprintf(stderr, "cannot start PostgreSQL with %s\n", script.c_str());
      return 1;
    }
    pg = "host=127.0.0.1 port=" + std::to_string(port) + " user=postgres dbname=postgres";
  }

  std::printf(
      "consolidator_bench: %d events over %d entities, batches of %d, SQLite %s, "
      "libpq %d\n\n",
      g_events, g_entities, g_batch, sqlite3_libversion(), PQlibVersion());
  std::printf("%-44s %12s %-9s %12s %8s\n", "figure (ceiling: raw upsert, same batches)", "value",
              "unit", "ceiling", "ratio");
  const std::string pg_target = "postgres: {connection: \"" + pg + "\", schema: bench_";

  double raw_sqlite = RawSqliteEventsPerSecond(dir + "/raw.db");
  Row("SQLite: projection (handler + checkpoint)",
      ProjectionEventsPerSecond("sqlite: {path: " + dir + "/projection.db}"), raw_sqlite);
  double raw_pg = RawPostgresEventsPerSecond(pg, "bench_raw");
  Row("PostgreSQL: projection (handler + checkpoint)",
      ProjectionEventsPerSecond(pg_target + "projection}"), raw_pg);
  {
    FilledSidecar sidecar(dir, g_events);
    if (sidecar.ok()) {
      Row("SQLite: end to end, catch-up from a sidecar",
          EndToEndEventsPerSecond(sidecar, "sqlite: {path: " + dir + "/e2e.db}"), raw_sqlite);
      Row("PostgreSQL: end to end, catch-up from a sidecar",
          EndToEndEventsPerSecond(sidecar, pg_target + "e2e}"), raw_pg);
    }
  }
  std::printf("\n");
  Lag(dir, 1000, g_lag_seconds);
  if (g_rebuild_events > 0) RebuildBench(dir, g_rebuild_events);
  if (own_pg) {
    std::string cmd = script + " stop " + dir + "/pg";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "stopping PostgreSQL failed\n");
  }
  std::filesystem::remove_all(dir);
  return 0;
}
