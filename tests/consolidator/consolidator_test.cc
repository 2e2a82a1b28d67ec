// sidelog-consolidator end to end, against a real standalone sidecar, with both targets: a
// SQLite file and a real PostgreSQL. The config is the shop example
// (examples/shop/order-summary.yaml), pointed at the test's sidecar and target.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <random>
#include <set>
#include <thread>

#include "nats_server.h"
#include "processes.h"
#include "shop_history.h"

namespace sidelog::testing {
namespace {

// Joins the test's helper threads on every way out of a test (an ASSERT returns early),
// first setting `stop` when given.
class Joining {
 public:
  explicit Joining(std::atomic<bool>* stop = nullptr) : stop_(stop) {}
  ~Joining() {
    if (stop_) *stop_ = true;
    for (auto& t : threads_) t.join();
  }
  template <typename Fn>
  void Run(Fn fn) {
    threads_.emplace_back(std::move(fn));
  }
  void JoinAll() {
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  std::atomic<bool>* stop_;
  std::vector<std::thread> threads_;
};

class ConsolidatorIT : public ::testing::TestWithParam<std::string> {
 protected:
  static void TearDownTestSuite() { pg_.reset(); }

  void SetUp() override {
    sidecar_ = std::make_unique<Sidecar>(SidecarStreams());
    sidecar_->Start();
    if (postgres()) {
      if (!pg_) pg_ = std::make_unique<Postgres>();
      ASSERT_TRUE(pg_->started()) << pg_->log();
    }
  }

  bool postgres() const { return GetParam() == "postgres"; }

  // The sidecar's config after its listeners (its streams, and any nats section).
  virtual std::string SidecarStreams() const { return kShopStreams; }
  // Where the consolidator reads events.
  virtual std::string SourceYaml() const { return "sidecar: {url: " + sidecar_->url() + "}"; }

  std::string TargetYaml(const ConsolidatorProcess& c) const {
    if (!postgres()) return "  sqlite: {path: " + c.dir() + "/view.db}";
    static int n = 0;
    return "  postgres: {connection: \"" + pg_->conninfo() + "\", schema: it_" +
           std::to_string(getpid()) + "_" + std::to_string(++n) + "}";
  }

  // The shop example with this test's sidecar, listener, target and batch; plus queries that
  // dump the tables.
  std::string ShopConfig(const ConsolidatorProcess& c, const std::string& batch,
                         const std::string& on_error = "stop") const {
    std::string yaml =
        ReadFile(std::string(SIDELOG_SOURCE_DIR) + "/examples/shop/order-summary.yaml");
    auto replace = [&](const std::string& from, const std::string& to) {
      auto at = yaml.find(from);
      EXPECT_NE(at, std::string::npos) << "the example no longer holds: " << from;
      if (at != std::string::npos) yaml.replace(at, from.size(), to);
    };
    replace("sidecar: {url: http://127.0.0.1:4380}", SourceYaml());
    replace("listen: 127.0.0.1:4390", "listen: " + c.listen());
    replace("  sqlite: {path: .sidelog/order-summary.db}", TargetYaml(c));
    replace("batch: {maxEvents: 500, maxDelay: 50ms}", "batch: " + batch);
    replace("onError: stop", "onError: " + on_error);
    yaml +=
        "  all-orders: SELECT id, customer_id, customer_name, status, total, items FROM orders "
        "ORDER BY id\n"
        "  all-customers: SELECT id, name FROM customers ORDER BY id\n"
        "  folded: SELECT sum(events) AS events FROM sidelog_checkpoints\n";
    return yaml;
  }

  static Json Get(const std::string& url, const std::string& path, int* status = nullptr) {
    cli::Client client(url);
    auto r = client.Send("GET", path);
    if (status) *status = r.status;
    return r.body;
  }

  // Waits until every source has folded as many events as the sidecar holds for it.
  static void WaitFolded(const ConsolidatorProcess& c, const std::map<std::string, int64_t>& want,
                         std::chrono::seconds timeout = std::chrono::seconds(60)) {
    auto deadline = Clock::now() + timeout;
    Json status;
    while (Clock::now() < deadline) {
      status = Get(c.url(), "/v1/status");
      // No sources while a changed projection rebuilds before it folds.
      bool done = status.is_object() && status["sources"].is_array() && !status["sources"].empty();
      if (done) {
        for (const auto& s : status["sources"]) {
          done = done && s["events"].get<int64_t>() == want.at(s["stream"].get<std::string>());
        }
      }
      if (done) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "not folded in time; status: " << status.dump() << "\n" << c.Log();
  }

  // The consolidator's tables equal the reference fold of `history`.
  static void ExpectView(const ConsolidatorProcess& c, const ShopHistory& history) {
    Json orders = Get(c.url(), "/v1/queries/all-orders")["rows"];
    auto expected = history.ExpectedOrders();
    ASSERT_EQ(orders.size(), expected.size());
    for (const auto& row : orders) {
      std::string id = row["id"].get<std::string>();
      ASSERT_TRUE(expected.count(id)) << "unexpected order " << row.dump();
      const OrderRow& want = expected.at(id);
      EXPECT_EQ(row["customer_id"], want.customer_id) << row.dump();
      EXPECT_EQ(row["status"], want.status) << row.dump();
      EXPECT_EQ(row["items"].get<int64_t>(), want.items) << row.dump();
      EXPECT_EQ(row["total"].get<double>(), want.total) << row.dump();
      if (want.customer_name) {
        EXPECT_EQ(row["customer_name"], *want.customer_name) << row.dump();
      } else {
        EXPECT_TRUE(row["customer_name"].is_null()) << row.dump();
      }
    }
    Json customers = Get(c.url(), "/v1/queries/all-customers")["rows"];
    auto want_customers = history.ExpectedCustomers();
    ASSERT_EQ(customers.size(), want_customers.size());
    for (const auto& row : customers) {
      EXPECT_EQ(row["name"], want_customers.at(row["id"].get<std::string>())) << row.dump();
    }
  }

  static std::map<std::string, int64_t> Counts(const ShopHistory& h) {
    return {{"orders", h.EventsIn("orders")}, {"customers", h.EventsIn("customers")}};
  }
  static std::map<std::string, int64_t> Counts(const std::vector<Append>& appends) {
    std::map<std::string, int64_t> n = {{"orders", 0}, {"customers", 0}};
    for (const auto& a : appends) n[a.stream] += static_cast<int64_t>(a.events.size());
    return n;
  }

  std::unique_ptr<Sidecar> sidecar_;
  static std::unique_ptr<Postgres> pg_;
};

std::unique_ptr<Postgres> ConsolidatorIT::pg_;

TEST_P(ConsolidatorIT, FoldsAScriptedHistoryExactlyLikeTheReferenceFold) {
  ShopHistory history(7, 3000);
  const auto& all = history.appends();
  std::vector<Append> first(all.begin(), all.begin() + static_cast<long>(all.size() / 2));
  std::vector<Append> second(all.begin() + static_cast<long>(all.size() / 2), all.end());
  ASSERT_TRUE(AppendAll(sidecar_->url(), first));  // read by catch-up pages

  ConsolidatorProcess c;
  c.WriteConfig(ShopConfig(c, "{maxEvents: 200, maxDelay: 20ms}"));
  c.Start();
  ASSERT_TRUE(AppendAll(sidecar_->url(), second));  // read live over SSE
  WaitFolded(c, Counts(history));
  ExpectView(c, history);

  // Caught up: no lag, and the metrics say what was folded.
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // stats refresh each second
  Json status = Get(c.url(), "/v1/status");
  EXPECT_EQ(status["lag"]["events"], 0) << status.dump();
  EXPECT_EQ(status["ready"], true);
  for (const auto& s : status["sources"]) {
    EXPECT_EQ(s["state"], "following") << s.dump();
    EXPECT_TRUE(s["lastError"].is_null()) << s.dump();
  }
  cli::Client client(c.url());
  std::string metrics = client.Send("GET", "/metrics").body.get<std::string>();
  EXPECT_NE(
      metrics.find("sidelog_consolidator_events_total{source=\"orders\",outcome=\"handled\"} " +
                   std::to_string(history.EventsIn("orders"))),
      std::string::npos)
      << metrics.substr(0, 2000);
  EXPECT_NE(metrics.find("sidelog_consolidator_lag_events{source=\"customers\"} 0"),
            std::string::npos);
}

TEST_P(ConsolidatorIT, KillNineAtRandomPointsNeitherRepeatsNorSkipsAnEvent) {
  ShopHistory history(11, 3000);
  ConsolidatorProcess c;
  // Small batches: many transactions, so the kills land between and inside them.
  c.WriteConfig(ShopConfig(c, "{maxEvents: 20, maxDelay: 5ms}"));
  c.Start();
  std::atomic<bool> appended{false};
  Joining threads;
  threads.Run([&] {
    EXPECT_TRUE(AppendAll(sidecar_->url(), history.appends(), 2, std::chrono::microseconds(1500)));
    appended = true;
  });
  std::mt19937 rng(GetParam() == "postgres" ? 3 : 5);
  int during_load = 0;
  for (int kill = 0; kill < 5; ++kill) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 500));
    if (!appended) ++during_load;
    int status = c.Kill(SIGKILL);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    c.Start();
    if (HasFatalFailure()) return;
  }
  threads.JoinAll();
  ASSERT_TRUE(appended);
  EXPECT_GE(during_load, 3) << "the load ended before most kills";
  WaitFolded(c, Counts(history));
  ExpectView(c, history);  // items and totals are increments: a replay would double them
}

TEST_P(ConsolidatorIT, AHandlerErrorStopsItsSourceAtTheEventAndAFixedConfigResumes) {
  ConsolidatorProcess c;
  const std::string target = TargetYaml(c);  // the same database across the restart
  auto config = [&](const std::string& item_sql) {
    return "name: strict\nsidecar: {url: " + sidecar_->url() + "}\nlisten: " + c.listen() +
           "\nsources: [{stream: orders}, {stream: customers}]\ntarget:\n" + target +
           "\nbatch: {maxEvents: 7, maxDelay: 5ms}\n"
           "schema: |\n"
           "  CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, qty INTEGER NOT NULL CHECK "
           "(qty > 0));\n"
           "  CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY);\n"
           "handlers:\n"
           "  - event: orders/ItemAdded\n"
           "    sql: " +
           item_sql +
           "\n"
           "  - event: customers/CustomerRegistered\n"
           "    sql: INSERT INTO customers (id) VALUES (:entity)\n"
           "queries:\n"
           "  items: SELECT count(*) AS n, sum(qty) AS qty FROM items\n"
           "  customers: SELECT count(*) AS n FROM customers\n";
  };
  c.WriteConfig(config("INSERT INTO items (id, qty) VALUES (:id, :data.qty)"));
  c.Start();

  std::vector<Append> appends;
  appends.reserve(40);
  for (int i = 0; i < 30; ++i) {
    appends.push_back(
        {"orders", "o" + std::to_string(i), {{"ItemAdded", {{"qty", i == 12 ? 0 : 1}}}}});
  }
  for (int i = 0; i < 10; ++i)
    appends.push_back(
        {"customers", "c" + std::to_string(i), {{"CustomerRegistered", Json::object()}}});
  ASSERT_TRUE(AppendAll(sidecar_->url(), appends, 1));
  cli::Client sidecar(sidecar_->url());
  Json bad = sidecar.Send("GET", "/v1/streams/orders/entities/o12/events").body["events"][0];

  // The orders source stops right before the bad event; customers goes on.
  auto deadline = Clock::now() + std::chrono::seconds(20);
  Json source;
  while (Clock::now() < deadline) {
    Json status = Get(c.url(), "/v1/status");
    source = status["sources"][0];
    if (source.contains("failedEvent") && status["sources"][1]["events"] == 10) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(source.contains("failedEvent")) << source.dump() << c.Log();
  EXPECT_EQ(source["state"], "failing");
  EXPECT_EQ(source["failedEvent"]["id"], bad["id"]);
  EXPECT_EQ(source["failedEvent"]["position"], bad["sidelogposition"]);
  EXPECT_EQ(source["failedEvent"]["entity"], "o12");
  EXPECT_EQ(source["position"].get<int64_t>(), bad["sidelogposition"].get<int64_t>() - 1);
  std::string error = source["lastError"].get<std::string>();
  EXPECT_NE(error.find(bad["id"].get<std::string>()), std::string::npos) << error;
  EXPECT_NE(error.find(postgres() ? "violates check constraint" : "CHECK constraint failed"),
            std::string::npos)
      << error;
  EXPECT_EQ(Get(c.url(), "/v1/queries/items")["rows"][0]["n"], 12);
  EXPECT_EQ(Get(c.url(), "/v1/queries/customers")["rows"][0]["n"], 10);

  // Fix the handler, restart: the changed handler rebuilds the read model from the first event
  // (it must not run on rows the old one made), and applies each event once.
  c.Kill(SIGTERM);
  c.WriteConfig(
      config("INSERT INTO items (id, qty) VALUES (:id, CASE WHEN :data.qty > 0 "
             "THEN :data.qty ELSE 1 END)"));
  c.Start();
  WaitFolded(c, {{"orders", 30}, {"customers", 10}});
  Json items = Get(c.url(), "/v1/queries/items")["rows"][0];
  EXPECT_EQ(items["n"], 30);
  EXPECT_EQ(items["qty"], 30);
  Json status = Get(c.url(), "/v1/status");
  EXPECT_TRUE(status["sources"][0]["lastError"].is_null());
  EXPECT_EQ(status["rebuild"]["state"], "done") << status.dump();
  EXPECT_EQ(status["rebuild"]["reason"], "projection changed") << status.dump();
}

TEST_P(ConsolidatorIT, OnErrorSkipDeadLettersTheEventAndGoesOn) {
  ConsolidatorProcess c;
  c.WriteConfig("name: lenient\nsidecar: {url: " + sidecar_->url() + "}\nlisten: " + c.listen() +
                "\nsources: [{stream: orders}]\ntarget:\n" + TargetYaml(c) +
                "\nonError: skip\nbatch: {maxEvents: 50, maxDelay: 5ms}\n"
                "schema: CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, qty INTEGER NOT "
                "NULL CHECK (qty > 0))\n"
                "handlers:\n"
                "  - {event: orders/ItemAdded, sql: 'INSERT INTO items (id, qty) VALUES (:id, "
                ":data.qty)'}\n"
                "queries:\n"
                "  items: SELECT count(*) AS n FROM items\n"
                "  dead: SELECT event_id, entity, error FROM sidelog_dead_letters\n");
  c.Start();
  std::vector<Append> appends;
  appends.reserve(20);
  for (int i = 0; i < 20; ++i) {
    appends.push_back(
        {"orders", "o" + std::to_string(i), {{"ItemAdded", {{"qty", i % 7 == 3 ? -1 : 2}}}}});
  }
  ASSERT_TRUE(AppendAll(sidecar_->url(), appends, 1));
  WaitFolded(c, {{"orders", 20}});
  EXPECT_EQ(Get(c.url(), "/v1/queries/items")["rows"][0]["n"], 17);
  Json dead = Get(c.url(), "/v1/queries/dead")["rows"];
  ASSERT_EQ(dead.size(), 3u) << dead.dump();
  std::set<std::string> entities;
  for (const auto& d : dead) entities.insert(d["entity"].get<std::string>());
  EXPECT_EQ(entities, (std::set<std::string>{"o3", "o10", "o17"}));
  Json status = Get(c.url(), "/v1/status")["sources"][0];
  EXPECT_EQ(status["deadLettered"], 3);
  EXPECT_EQ(status["state"], "following");
}

TEST_P(ConsolidatorIT, ARebuildWhileEventsArriveShowsTheOldViewThenTheCompleteNewOne) {
  ShopHistory history(23, 4000);
  const auto& all = history.appends();
  std::vector<Append> before(all.begin(), all.begin() + static_cast<long>(all.size() / 2));
  std::vector<Append> during(all.begin() + static_cast<long>(all.size() / 2), all.end());
  ConsolidatorProcess c;
  c.WriteConfig(ShopConfig(c, "{maxEvents: 100, maxDelay: 10ms}"));
  c.Start();
  ASSERT_TRUE(AppendAll(sidecar_->url(), before));
  WaitFolded(c, Counts(before));
  const int64_t before_count = Counts(before)["orders"] + Counts(before)["customers"];

  // A reader polls how many events the view holds: it must never go back (a half-built view
  // would hold fewer), and never fail.
  std::atomic<bool> stop{false};
  std::atomic<int64_t> reads{0}, went_back{0}, failed{0};
  Joining reader(&stop), load(&stop);
  reader.Run([&] {
    cli::Client client(c.url());
    int64_t last = 0;
    while (!stop) {
      auto r = client.Send("GET", "/v1/queries/folded");
      if (r.status != 200) {
        ++failed;
        continue;
      }
      int64_t n = r.body["rows"][0]["events"].get<int64_t>();
      if (n < last) ++went_back;
      last = n;
      ++reads;
    }
  });
  load.Run(
      [&] { EXPECT_TRUE(AppendAll(sidecar_->url(), during, 2, std::chrono::microseconds(300))); });

  cli::Client client(c.url());
  auto accepted = client.Send("POST", "/v1/rebuild");
  ASSERT_EQ(accepted.status, 202) << accepted.body.dump();
  EXPECT_EQ(client.Send("POST", "/v1/rebuild").status, 409);  // one at a time
  auto deadline = Clock::now() + std::chrono::seconds(90);
  Json rebuild;
  bool saw_progress = false;
  while (Clock::now() < deadline) {
    rebuild = Get(c.url(), "/v1/status")["rebuild"];
    if (rebuild["state"] == "building" && rebuild.value("eventsTotal", 0) > 0) {
      saw_progress = true;
      EXPECT_GE(rebuild["eventsTotal"].get<int64_t>(), before_count);
      EXPECT_LE(rebuild["progress"].get<double>(), 1.0);
    }
    if (rebuild["state"] == "done" || rebuild["state"] == "failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  load.JoinAll();
  ASSERT_EQ(rebuild["state"], "done") << rebuild.dump() << c.Log();
  EXPECT_GE(rebuild["eventsDone"].get<int64_t>(), rebuild["eventsTotal"].get<int64_t>());
  EXPECT_EQ(rebuild["progress"], 1.0);
  EXPECT_TRUE(saw_progress) << "never saw the rebuild building";
  WaitFolded(c, Counts(history));
  stop = true;
  reader.JoinAll();
  EXPECT_GT(reads.load(), 10);
  EXPECT_EQ(went_back.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  ExpectView(c, history);

  // The CLI asks the running consolidator, and follows it to the end.
  EXPECT_EQ(c.RunRebuildCommand(), 0) << c.RebuildLog();
  EXPECT_NE(c.RebuildLog().find("rebuild: done"), std::string::npos) << c.RebuildLog();
  WaitFolded(c, Counts(history));
  ExpectView(c, history);

  // So does `sidelog rebuild`, with a progress bar (a line per tenth when not on a terminal).
  EXPECT_EQ(c.RunCliRebuild(), 0) << c.CliLog();
  const std::string out = c.CliLog();
  EXPECT_NE(out.find("] 100%"), std::string::npos) << out;
  EXPECT_NE(out.find("events  done"), std::string::npos) << out;
  EXPECT_NE(out.find("rebuilt and swapped in"), std::string::npos) << out;
  ExpectView(c, history);
}

TEST_P(ConsolidatorIT, TheRebuildCommandRebuildsOfflineWhenNoConsolidatorRuns) {
  ShopHistory history(31, 1500);
  ASSERT_TRUE(AppendAll(sidecar_->url(), history.appends()));
  ConsolidatorProcess c;
  c.WriteConfig(ShopConfig(c, "{maxEvents: 500, maxDelay: 10ms}"));
  EXPECT_EQ(c.RunRebuildCommand(), 0) << c.RebuildLog();
  EXPECT_NE(c.RebuildLog().find("the new view is live"), std::string::npos) << c.RebuildLog();
  c.Start();
  // The rebuilt view, with its checkpoints: nothing left to fold. Each source loads its
  // checkpoint on its own thread after start (state "starting" until then; bounded wait), then
  // has folded no batch.
  Json status;
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(std::chrono::milliseconds(50))) {
    status = Get(c.url(), "/v1/status");
    bool loaded = true;
    for (const auto& s : status["sources"]) loaded = loaded && s["state"] != "starting";
    if (loaded) break;
  }
  for (const auto& s : status["sources"]) {
    EXPECT_EQ(s["events"], history.EventsIn(s["stream"].get<std::string>())) << s.dump();
    EXPECT_EQ(s["batches"], 0) << "the rebuild left nothing to fold: " << s.dump();
  }
  ExpectView(c, history);
}

// Waits until `done(status)` holds for the consolidator's /v1/status; the last status read.
Json WaitForStatus(const ConsolidatorProcess& c, const std::function<bool(const Json&)>& done,
                   std::chrono::seconds timeout = std::chrono::seconds(30)) {
  Json status;
  for (auto deadline = Clock::now() + timeout; Clock::now() < deadline;
       std::this_thread::sleep_for(std::chrono::milliseconds(50))) {
    cli::Client client(c.url());
    status = client.Send("GET", "/v1/status").body;
    if (status.is_object() && done(status)) return status;
  }
  ADD_FAILURE() << "timed out; last status: " << status.dump() << "\n" << c.Log();
  return status;
}

bool EverySource(const Json& status, const std::function<bool(const Json&)>& pred) {
  if (!status["sources"].is_array() || status["sources"].empty()) return false;
  for (const auto& s : status["sources"]) {
    if (!pred(s)) return false;
  }
  return true;
}

// The sidecar starts again on a new, shorter log (another file: `make run` after `make run` in
// the other mode did this): the checkpoints belong to the old streams. The consolidator must
// stop folding them and say so, and a rebuild must fold the new streams from their beginning.
TEST_P(ConsolidatorIT, ASourceThatIsAnotherStreamIsStoppedAndARebuildFoldsTheNewOne) {
  ShopHistory old_history(41, 300);
  ASSERT_TRUE(AppendAll(sidecar_->url(), old_history.appends()));
  ConsolidatorProcess c;
  c.WriteConfig(ShopConfig(c, "{maxEvents: 100, maxDelay: 10ms}"));
  c.Start();
  WaitFolded(c, Counts(old_history));

  sidecar_->Kill(SIGKILL);
  std::filesystem::remove_all(sidecar_->dir() + "/data");
  sidecar_->Start();
  ShopHistory new_history(43, 20);
  ASSERT_TRUE(AppendAll(sidecar_->url(), new_history.appends()));

  // Reset, and (once the stats are read after the last append) all of the new stream behind.
  Json status = WaitForStatus(c, [&](const Json& st) {
    return EverySource(st, [&](const Json& s) {
      return s["state"] == "reset" &&
             s["lag"]["events"] == new_history.EventsIn(s["stream"].get<std::string>());
    });
  });
  for (const auto& s : status["sources"]) {
    ASSERT_TRUE(s.contains("reset")) << s.dump();
    EXPECT_EQ(s["reset"]["reason"], "SourceReset") << s.dump();
    EXPECT_NE(s["reset"]["identity"], s["reset"]["recordedIdentity"]) << s.dump();
    EXPECT_NE(s["lastError"].get<std::string>().find("not the stream the checkpoint belongs to"),
              std::string::npos)
        << s.dump();
    // Nothing of the new stream is folded: all of it is behind.
    const std::string stream = s["stream"].get<std::string>();
    EXPECT_EQ(s["lag"]["events"], new_history.EventsIn(stream)) << s.dump();
  }
  cli::Client client(c.url());
  const std::string metrics = client.Send("GET", "/metrics").body.get<std::string>();
  EXPECT_NE(metrics.find("sidelog_consolidator_source_reset{source=\"orders\"} 1"),
            std::string::npos)
      << metrics.substr(0, 3000);
  EXPECT_NE(c.Log().find("SourceReset"), std::string::npos) << c.Log();
  // The old view stays as it was: no event of the new streams was applied on top of it.
  ExpectView(c, old_history);

  // A rebuild folds the new streams from position 0, reaches them and is swapped in.
  ASSERT_EQ(client.Send("POST", "/v1/rebuild").status, 202);
  status = WaitForStatus(c, [](const Json& st) {
    return st["rebuild"]["state"] == "done" || st["rebuild"]["state"] == "failed";
  });
  ASSERT_EQ(status["rebuild"]["state"], "done") << status.dump() << c.Log();
  status = WaitForStatus(c, [](const Json& st) {
    return EverySource(st, [](const Json& s) { return s["state"] == "following"; });
  });
  for (const auto& s : status["sources"]) EXPECT_FALSE(s.contains("reset")) << s.dump();
  WaitFolded(c, Counts(new_history));
  ExpectView(c, new_history);

  // A restart finds the new streams to be its own: the rebuild recorded their identities.
  c.Kill(SIGTERM);
  c.Start();
  status = WaitForStatus(c, [](const Json& st) {
    return EverySource(st, [](const Json& s) { return s["state"] == "following"; });
  });
  for (const auto& s : status["sources"]) EXPECT_FALSE(s.contains("reset")) << s.dump();
  ExpectView(c, new_history);
}

// A changed handler must not run on the tables the old one built: the consolidator restarted
// with it serves the old view, rebuilds with the new handlers, swaps, then folds.
TEST_P(ConsolidatorIT, ChangedHandlersRebuildTheReadModelBeforeTheyFold) {
  ShopHistory history(61, 600);
  ASSERT_TRUE(AppendAll(sidecar_->url(), history.appends()));
  ConsolidatorProcess c;
  const std::string config = ShopConfig(c, "{maxEvents: 100, maxDelay: 10ms}");
  c.WriteConfig(config);
  c.Start();
  WaitFolded(c, Counts(history));
  ExpectView(c, history);
  Json status = Get(c.url(), "/v1/status");
  EXPECT_FALSE(status.contains("paused")) << status.dump();

  // Restarting with the same config rebuilds nothing.
  c.Kill(SIGTERM);
  c.Start();
  status = WaitForStatus(c, [](const Json& st) {
    return EverySource(st, [](const Json& s) { return s["state"] == "following"; });
  });
  EXPECT_EQ(status["rebuild"]["state"], "idle") << status.dump();

  // New orders now start as 'new': the old rows must become 'new' too, by a rebuild.
  std::string changed = config;
  const auto at = changed.find("'created',");
  ASSERT_NE(at, std::string::npos);
  changed.replace(at, 10, "'new',");
  c.Kill(SIGTERM);
  c.WriteConfig(changed);
  c.Start();
  status = WaitForStatus(c, [](const Json& st) { return st["rebuild"]["state"] == "done"; });
  EXPECT_EQ(status["rebuild"]["reason"], "projection changed") << status.dump();
  status = WaitForStatus(c, [](const Json& st) {
    return !st.contains("paused") &&
           EverySource(st, [](const Json& s) { return s["state"] == "following"; });
  });
  WaitFolded(c, Counts(history));
  const Json orders = Get(c.url(), "/v1/queries/all-orders")["rows"];
  ASSERT_FALSE(orders.empty());
  int still_created = 0, now_new = 0;
  for (const auto& row : orders) {
    still_created += row["status"] == "created";
    now_new += row["status"] == "new";
  }
  EXPECT_EQ(still_created, 0) << "a row of the old handler survived the rebuild";
  EXPECT_GT(now_new, 0) << orders.dump().substr(0, 1000);
  EXPECT_NE(c.Log().find("rebuilding before folding"), std::string::npos) << c.Log();
}

// A rebuild that cannot go on (its source is down) says so, can be cancelled, leaves the live
// view as it was, and does not hold up a shutdown.
TEST_P(ConsolidatorIT, ARebuildThatCannotFinishIsCancelledAndShutdownStaysBounded) {
  // Small batches, so that a rebuild takes many transactions and is still building when its
  // sidecar goes away.
  ShopHistory history(53, 3000);
  ASSERT_TRUE(AppendAll(sidecar_->url(), history.appends()));
  ConsolidatorProcess c;
  c.WriteConfig(ShopConfig(c, "{maxEvents: 5, maxDelay: 10ms}"));
  c.Start();
  WaitFolded(c, Counts(history));

  cli::Client client(c.url());
  EXPECT_EQ(client.Send("DELETE", "/v1/rebuild").status, 409) << "nothing to cancel yet";
  sidecar_->Kill(SIGKILL);
  // With the sidecar gone the rebuild cannot even count the sources: it fails and says why.
  ASSERT_EQ(client.Send("POST", "/v1/rebuild").status, 202);
  Json status = WaitForStatus(c, [](const Json& st) { return st["rebuild"]["state"] == "failed"; });
  EXPECT_FALSE(status["rebuild"].value("error", "").empty()) << status.dump();

  // Started while the sidecar answers, then the sidecar goes: the rebuild stays building.
  sidecar_->Start();
  ASSERT_EQ(client.Send("POST", "/v1/rebuild").status, 202);
  WaitForStatus(c, [](const Json& st) { return st["rebuild"]["state"] == "building"; });
  sidecar_->Kill(SIGKILL);
  EXPECT_EQ(c.RunCliRebuild({"--cancel"}), 0) << c.CliLog();  // DELETE /v1/rebuild, then waits
  EXPECT_NE(c.CliLog().find("rebuild cancelled"), std::string::npos) << c.CliLog();
  status = Get(c.url(), "/v1/status");
  EXPECT_EQ(status["rebuild"]["state"], "cancelled") << status.dump();
  EXPECT_LT(status["rebuild"]["progress"].get<double>(), 1.0) << status.dump();
  ExpectView(c, history);
  // A new rebuild may start after a cancelled one.
  sidecar_->Start();
  ASSERT_EQ(client.Send("POST", "/v1/rebuild").status, 202);
  WaitForStatus(c, [](const Json& st) { return st["rebuild"]["state"] == "building"; });
  sidecar_->Kill(SIGKILL);

  // SIGTERM mid-rebuild, source down: the process exits 0 within its shutdown limit.
  const auto before = Clock::now();
  const int exit_status = c.Kill(SIGTERM);
  EXPECT_LT(Clock::now() - before, std::chrono::seconds(10)) << c.Log();
  EXPECT_TRUE(WIFEXITED(exit_status) && WEXITSTATUS(exit_status) == 0) << exit_status << c.Log();
}

TEST_P(ConsolidatorIT, NamedQueriesBindParametersAndAnswerProblems) {
  ConsolidatorProcess c;
  c.WriteConfig(ShopConfig(c, "{maxEvents: 10, maxDelay: 5ms}"));
  c.Start();
  ASSERT_TRUE(AppendAll(sidecar_->url(),
                        {{"customers", "c1", {{"CustomerRegistered", {{"name", "Ada"}}}}},
                         {"orders",
                          "o-1",
                          {{"OrderCreated", {{"customerId", "c1"}}},
                           {"ItemAdded", {{"item", {{"sku", "a"}, {"price", 2.5}}}}}}}},
                        1));
  WaitFolded(c, {{"orders", 2}, {"customers", 1}});
  int code = 0;
  Json order = Get(c.url(), "/v1/queries/order?id=o-1", &code);
  EXPECT_EQ(code, 200);
  EXPECT_EQ(order, Json::parse(R"({"rows":[{"id":"o-1","customer_id":"c1","customer_name":"Ada",
                                  "status":"created","total":2.5,"items":1}]})"));
  // An injection attempt is a value that matches nothing.
  Json evil = Get(c.url(), "/v1/queries/order?id=o-1%27%20OR%20%271%27%3D%271", &code);
  EXPECT_EQ(code, 200);
  EXPECT_TRUE(evil["rows"].empty()) << evil.dump();
  Json totals = Get(c.url(), "/v1/queries/totals", &code);
  EXPECT_EQ(totals["rows"][0]["status"], "created");
  EXPECT_EQ(totals["rows"][0]["orders"], 1);

  cli::Client client(c.url());
  auto unknown = client.Send("GET", "/v1/queries/drop-everything");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.body["type"], "https://sidelog.dev/problems/not-found");
  EXPECT_EQ(client.Send("GET", "/v1/queries/order").status, 400);
  EXPECT_EQ(client.Send("GET", "/v1/queries/order?id=o-1&limit=1").status, 400);
  EXPECT_EQ(client.Send("POST", "/v1/queries/order?id=o-1").status, 405);
  auto bad_escape = client.Send("GET", "/v1/queries/order?id=o-1%");
  EXPECT_EQ(bad_escape.status, 400);
  EXPECT_NE(bad_escape.body.value("detail", "").find("bad percent-encoding"), std::string::npos)
      << bad_escape.body.dump();
  EXPECT_EQ(client.Send("GET", "/v1/status", nullptr, {{"Host", "evil.example:80"}}).status, 403);
  Json list = Get(c.url(), "/v1/queries");
  EXPECT_NE(list.dump().find(R"({"name":"order","parameters":["id"]})"), std::string::npos)
      << list.dump();
}

TEST_P(ConsolidatorIT, SqlThatDoesNotPrepareIsRefusedAtStartWithFileAndLine) {
  ConsolidatorProcess c;
  std::string yaml = ShopConfig(c, "{maxEvents: 10, maxDelay: 5ms}");
  const std::string good = "UPDATE orders SET status = 'paid' WHERE id = :entity";
  auto at = yaml.find(good);
  ASSERT_NE(at, std::string::npos);
  yaml.replace(at, good.size(), "UPDATE orderz SET status = 'paid' WHERE id = :entity");
  int line =
      1 + static_cast<int>(std::count(yaml.begin(), yaml.begin() + static_cast<long>(at), '\n'));
  c.WriteConfig(yaml);
  EXPECT_EQ(c.StartAndExpectExit(), 2);
  std::string log = c.Log();
  std::string want = c.config_path() + ":" + std::to_string(line) +
                     ": handlers[5].sql: the statement does not prepare: ";
  EXPECT_NE(log.find(want), std::string::npos) << "want: " << want << "\nlog: " << log;
  EXPECT_NE(log.find("orderz"), std::string::npos) << log;
}

TEST_P(ConsolidatorIT, AStandbyReplicaTakesOverWhenTheLeaderIsKilled) {
  if (!postgres()) GTEST_SKIP() << "standbys share a PostgreSQL database";
  ShopHistory history(53, 2000);
  const auto& all = history.appends();
  std::vector<Append> first(all.begin(), all.begin() + static_cast<long>(all.size() / 2));
  std::vector<Append> second(all.begin() + static_cast<long>(all.size() / 2), all.end());
  ConsolidatorProcess leader, standby;
  const std::string yaml = ShopConfig(leader, "{maxEvents: 100, maxDelay: 10ms}") + "replicas: 2\n";
  leader.WriteConfig(yaml);
  std::string standby_yaml = yaml;
  standby_yaml.replace(standby_yaml.find(leader.listen()), leader.listen().size(),
                       standby.listen());
  standby.WriteConfig(standby_yaml);  // the same schema: one lock between them
  leader.Start();
  standby.StartStandby();

  ASSERT_TRUE(AppendAll(sidecar_->url(), first));
  WaitFolded(leader, Counts(first));
  int ready = 0;
  Json status = Get(standby.url(), "/v1/status");
  Get(standby.url(), "/readyz", &ready);
  EXPECT_EQ(status["role"], "standby") << status.dump();
  EXPECT_EQ(ready, 503) << "a standby is not ready: it does not fold";
  EXPECT_EQ(Get(leader.url(), "/v1/status")["role"], "leader");

  leader.Kill(SIGKILL);
  ASSERT_TRUE(AppendAll(sidecar_->url(), second));
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline) {
    Get(standby.url(), "/readyz", &ready);
    if (ready == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(ready, 200) << "the standby did not take over:\n" << standby.Log();
  EXPECT_EQ(Get(standby.url(), "/v1/status")["role"], "leader");
  WaitFolded(standby, Counts(history));
  ExpectView(standby, history);  // from the leader's checkpoint on: nothing twice, nothing lost
}

// The same consolidator reading JetStream directly (no sidecar in its way), by push and by
// pull, into SQLite. The sidecar that writes is replicated through the same nats-server.
class ConsolidatorJetStreamIT : public ConsolidatorIT {
 protected:
  void SetUp() override {
    nats_.Start();
    ConsolidatorIT::SetUp();
  }
  std::string SidecarStreams() const override {
    return "nats: {url: \"" + nats_.url() + "\", createStreams: true}\n" + kShopStreams;
  }
  std::string SourceYaml() const override {
    return "namespace: it\nnats: {url: \"" + nats_.url() + "\"}\ndelivery: " + GetParam();
  }
  NatsServer nats_;
};

TEST_P(ConsolidatorJetStreamIT, FoldsTheHistoryFromJetStreamThenLiveEvents) {
  ShopHistory history(41, 3000);
  const auto& all = history.appends();
  std::vector<Append> first(all.begin(), all.begin() + static_cast<long>(all.size() / 2));
  std::vector<Append> second(all.begin() + static_cast<long>(all.size() / 2), all.end());
  ASSERT_TRUE(AppendAll(sidecar_->url(), first));  // there before the consolidator starts
  ConsolidatorProcess c;
  c.WriteConfig(ShopConfig(c, "{maxEvents: 200, maxDelay: 20ms}"));
  c.Start();
  WaitFolded(c, Counts(first));
  ASSERT_TRUE(AppendAll(sidecar_->url(), second));  // arrives while it follows
  WaitFolded(c, Counts(history));
  ExpectView(c, history);
  Json status = Get(c.url(), "/v1/status");
  EXPECT_EQ(status["jetStream"]["delivery"], GetParam()) << status.dump();
  for (const auto& s : status["sources"]) {
    EXPECT_EQ(s["lag"]["positions"], 0) << s.dump();
    EXPECT_EQ(s["state"], "following") << s.dump();
  }
}

TEST_P(ConsolidatorJetStreamIT, KilledMidFoldItResumesAfterItsCheckpointWithoutRepeats) {
  ShopHistory history(43, 3000);
  ASSERT_TRUE(AppendAll(sidecar_->url(), history.appends()));
  ConsolidatorProcess c;
  c.WriteConfig(ShopConfig(c, "{maxEvents: 50, maxDelay: 5ms}"));
  c.Start();
  // Kill -9 it a few times while it folds; each start reads from its database checkpoint.
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    c.Kill(SIGKILL);
    c.Start();
  }
  WaitFolded(c, Counts(history));
  ExpectView(c, history);
}

// JetStream's streams are deleted and made again (here: a new store) under a running
// consolidator: the streams' identities change, the sources stop with SourceReset, and a
// rebuild folds the new streams.
TEST_P(ConsolidatorJetStreamIT, StreamsMadeAgainInJetStreamAreResetSourcesUntilARebuild) {
  ShopHistory old_history(71, 300);
  ASSERT_TRUE(AppendAll(sidecar_->url(), old_history.appends()));
  ConsolidatorProcess c;
  c.WriteConfig(ShopConfig(c, "{maxEvents: 100, maxDelay: 10ms}"));
  c.Start();
  WaitFolded(c, Counts(old_history));

  sidecar_->Kill(SIGKILL);
  nats_.Kill(SIGKILL);
  std::filesystem::remove_all(nats_.dir() + "/js");
  std::filesystem::remove_all(sidecar_->dir() + "/data");
  nats_.Start();
  sidecar_->Start();  // creates the streams again
  ShopHistory new_history(73, 20);
  ASSERT_TRUE(AppendAll(sidecar_->url(), new_history.appends()));

  Json status = WaitForStatus(
      c,
      [](const Json& st) {
        return EverySource(st, [](const Json& s) { return s["state"] == "reset"; });
      },
      std::chrono::seconds(60));
  for (const auto& s : status["sources"]) {
    EXPECT_EQ(s["reset"]["reason"], "SourceReset") << s.dump();
    EXPECT_EQ(s["reset"]["identity"].get<std::string>().rfind("jetstream:", 0), 0u) << s.dump();
    EXPECT_NE(s["reset"]["identity"], s["reset"]["recordedIdentity"]) << s.dump();
  }
  {
    SCOPED_TRACE("the old view, before the rebuild");
    ExpectView(c, old_history);
  }

  cli::Client client(c.url());
  ASSERT_EQ(client.Send("POST", "/v1/rebuild").status, 202);
  status = WaitForStatus(c, [](const Json& st) {
    return st["rebuild"]["state"] == "done" || st["rebuild"]["state"] == "failed";
  });
  ASSERT_EQ(status["rebuild"]["state"], "done") << status.dump() << c.Log();
  WaitForStatus(c, [](const Json& st) {
    return EverySource(st, [](const Json& s) { return s["state"] == "following"; });
  });
  SCOPED_TRACE("the new view, after the rebuild");
  ExpectView(c, new_history);
}

TEST_P(ConsolidatorJetStreamIT, ARebuildCountsProgressInPositions) {
  ShopHistory history(47, 1000);
  ASSERT_TRUE(AppendAll(sidecar_->url(), history.appends()));
  ConsolidatorProcess c;
  c.WriteConfig(ShopConfig(c, "{maxEvents: 200, maxDelay: 10ms}"));
  c.Start();
  WaitFolded(c, Counts(history));
  EXPECT_EQ(c.RunCliRebuild(), 0) << c.CliLog();
  EXPECT_NE(c.CliLog().find("positions  done"), std::string::npos) << c.CliLog();
  Json rebuild = Get(c.url(), "/v1/status")["rebuild"];
  EXPECT_EQ(rebuild["state"], "done") << rebuild.dump();
  EXPECT_EQ(rebuild["positionsDone"], rebuild["positionsTotal"]) << rebuild.dump();
  ExpectView(c, history);
}

INSTANTIATE_TEST_SUITE_P(Delivery, ConsolidatorJetStreamIT, ::testing::Values("push", "pull"),
                         [](const auto& info) { return info.param; });

INSTANTIATE_TEST_SUITE_P(Targets, ConsolidatorIT, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sidelog::testing
