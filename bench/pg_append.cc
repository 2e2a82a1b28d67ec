// pg_append: the alternative a user would pick for an event store: an append-only events table
// in PostgreSQL with a unique (stream, entity, version) key, one transaction per append over
// libpq, synchronous_commit=on. N threads, each with its own connection and its own entities.
//
// Usage: pg_append CONNINFO THREADS SECONDS EVENTS_PER_APPEND
// Prints: RESULT <appends/s> <events/s> <p50 ms> <p99 ms>
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: pg_append CONNINFO THREADS SECONDS EVENTS_PER_APPEND\n");
    return 2;
  }
  const std::string conninfo = argv[1];
  const int threads = std::atoi(argv[2]);
  const double seconds = std::atof(argv[3]);
  const int per_append = std::atoi(argv[4]);
  {
    PGconn* c = PQconnectdb(conninfo.c_str());
    if (PQstatus(c) != CONNECTION_OK) {
      std::fprintf(stderr, "connect: %s", PQerrorMessage(c));
      return 1;
    }
    PGresult* r = PQexec(c,
                         "DROP TABLE IF EXISTS events;"
                         "CREATE TABLE events (id bigserial PRIMARY KEY, stream text NOT NULL, "
                         "entity text NOT NULL, version bigint NOT NULL, type text NOT NULL, "
                         "time timestamptz NOT NULL DEFAULT now(), data jsonb NOT NULL, "
                         "UNIQUE (stream, entity, version))");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      std::fprintf(stderr, "schema: %s", PQerrorMessage(c));
      return 1;
    }
    PQclear(r);
    PQfinish(c);
  }
  std::atomic<long> appends{0};
  std::mutex mu;
  std::vector<double> latencies;
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      PGconn* c = PQconnectdb(conninfo.c_str());
      std::vector<double> mine;
      std::vector<long> versions(64, 0);
      // One statement = one transaction: the next version is computed and checked by the key.
      std::string sql =
          "INSERT INTO events (stream, entity, version, type, data) SELECT $1, $2, "
          "coalesce((SELECT max(version) FROM events WHERE stream = $1 AND entity = "
          "$2), 0) + g, 'PaymentReceived', $3::jsonb FROM generate_series(1, $4) g";
      PGresult* p = PQprepare(c, "append", sql.c_str(), 4, nullptr);
      PQclear(p);
      const std::string data =
          R"({"amount": 12.5, "currency": "EUR", "note": "benchmark payload"})";
      const std::string n = std::to_string(per_append);
      for (long i = 0;; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        if (std::chrono::duration<double>(t0 - start).count() >= seconds) break;
        std::string entity = "e" + std::to_string(t) + "-" + std::to_string(i % 64);
        const char* params[4] = {"bench", entity.c_str(), data.c_str(), n.c_str()};
        PGresult* r = PQexecPrepared(c, "append", 4, params, nullptr, nullptr, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
          std::fprintf(stderr, "append: %s", PQerrorMessage(c));
          std::exit(1);
        }
        PQclear(r);
        mine.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count());
        appends++;
      }
      PQfinish(c);
      std::lock_guard<std::mutex> lock(mu);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
    });
  }
  for (auto& th : pool) th.join();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) {
    return latencies.empty() ? 0.0 : latencies[static_cast<size_t>(p * (latencies.size() - 1))];
  };
  std::printf("RESULT %.0f %.0f %.3f %.3f\n", appends / elapsed, appends * per_append / elapsed,
              pct(0.5), pct(0.99));
  return 0;
}
