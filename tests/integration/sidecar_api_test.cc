// The sidecar's HTTP API, driven over real HTTP against the real binary: every route and every
// status code of DESIGN.md's table, and a corpus of bad input that must be refused with a clear
// problem and leave the log unchanged.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <sstream>
#include <thread>

#include "raw_http.h"
#include "sidecar_process.h"

namespace sidelog::testing {
namespace {

class SidecarApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    proc_ = new SidecarProcess();
    proc_->Start();
  }
  static void TearDownTestSuite() {
    delete proc_;
    proc_ = nullptr;
  }

  RawResponse Post(const std::string& path, const std::string& body,
                   std::map<std::string, std::string> headers = {}) {
    return RawRequest(proc_->port(), "POST", path, body, std::move(headers));
  }
  RawResponse Get(const std::string& path, std::map<std::string, std::string> headers = {}) {
    return RawRequest(proc_->port(), "GET", path, "", std::move(headers));
  }
  RawResponse Append(const std::string& entity, const Json& body,
                     std::map<std::string, std::string> headers = {}) {
    return Post("/v1/streams/orders/entities/" + entity + "/events", body.dump(),
                std::move(headers));
  }
  int64_t StreamEvents() {
    auto r = Get("/v1/streams");
    const Json body = r.json();
    for (const auto& s : body["streams"]) {
      if (s["name"] == "orders") return s["events"].get<int64_t>();
    }
    return -1;
  }
  // A refused request answers problem+json with the code and a useful detail.
  static void ExpectProblem(const RawResponse& r, int status, const std::string& detail_part) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.header("content-type"), "application/problem+json") << r.body;
    Json p = r.json();
    ASSERT_TRUE(p.is_object()) << r.body;
    EXPECT_EQ(p["status"], status);
    EXPECT_TRUE(p["type"].is_string());
    EXPECT_TRUE(p["title"].is_string());
    EXPECT_NE(p.value("detail", "").find(detail_part), std::string::npos)
        << "detail: " << p.value("detail", "") << " (wanted: " << detail_part << ")";
  }

  static SidecarProcess* proc_;
};
SidecarProcess* SidecarApi::proc_ = nullptr;

Json Body(std::vector<Json> events, const Json& expected = nullptr) {
  Json b = {{"events", events}};
  if (!expected.is_null()) b["expectedVersion"] = expected;
  return b;
}
Json E(const std::string& type, Json data = Json::object(), const std::string& id = "") {
  Json e = {{"type", type}, {"data", data}};
  if (!id.empty()) e["id"] = id;
  return e;
}

TEST_F(SidecarApi, AppendAnswers201WithVersionsPositionAndETag) {
  auto r = Append("a-1", Body({E("Created", {{"customerId", "c"}}, "a1-e1")}, "none"));
  ASSERT_EQ(r.status, 201) << r.body;
  Json b = r.json();
  EXPECT_EQ(b["stream"], "orders");
  EXPECT_EQ(b["entity"], "a-1");
  EXPECT_EQ(b["fromVersion"], 1);
  EXPECT_EQ(b["version"], 1);
  EXPECT_GT(b["position"].get<int64_t>(), 0);
  EXPECT_EQ(b["events"], Json::parse(R"([{"id":"a1-e1","version":1}])"));
  EXPECT_EQ(r.header("etag"), "\"1\"");
  EXPECT_EQ(r.header("location"), "/v1/streams/orders/entities/a-1");
  EXPECT_FALSE(r.header("x-request-id").empty());

  auto two = Append("a-1", Body({E("ItemAdded", {{"item", "x"}}), E("Paid", {{"amount", 3}})}));
  ASSERT_EQ(two.status, 201);
  EXPECT_EQ(two.json()["fromVersion"], 2);
  EXPECT_EQ(two.json()["version"], 3);
}

TEST_F(SidecarApi, ReplayAnswers200WithTheOriginalResult) {
  Json body = Body({E("Created", {{"customerId", "c"}}, "r1-e1")}, "none");
  auto first = Append("r-1", body);
  ASSERT_EQ(first.status, 201);
  auto again = Append("r-1", body);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.json(), first.json());
  EXPECT_EQ(again.header("sidelog-replay"), "true");
}

TEST_F(SidecarApi, WrongExpectedVersionAnswers409WithCurrentVersion) {
  ASSERT_EQ(Append("c-1", Body({E("Created", {{"customerId", "c"}})})).status, 201);
  auto r = Append("c-1", Body({E("Paid", {{"amount", 1}})}, 5));
  ExpectProblem(r, 409, "expected version 5");
  EXPECT_EQ(r.json()["currentVersion"], 1);
  EXPECT_EQ(r.json()["expectedVersion"], "5");
  ExpectProblem(Append("c-1", Body({E("Paid", {{"amount", 1}})}, "none")), 409, "no entity");
}

TEST_F(SidecarApi, ReusedIdWithOtherContentAnswers409) {
  ASSERT_EQ(Append("i-1", Body({E("Created", {{"customerId", "c"}}, "i1-e1")})).status, 201);
  ExpectProblem(Append("i-1", Body({E("Created", {{"customerId", "other"}}, "i1-e1")})), 409,
                "other content");
}

TEST_F(SidecarApi, IfMatchIsTheExpectedVersion) {
  ASSERT_EQ(Append("m-1", Body({E("Created", {{"customerId", "c"}})})).status, 201);
  ExpectProblem(Append("m-1", Body({E("Paid", {{"amount", 1}})}), {{"If-Match", "\"7\""}}), 409,
                "expected version 7");
  EXPECT_EQ(Append("m-1", Body({E("Paid", {{"amount", 1}})}), {{"If-Match", "\"1\""}}).status, 201);
  ExpectProblem(Append("m-1", Body({E("Paid", {{"amount", 1}})}, 2), {{"If-Match", "\"3\""}}), 400,
                "disagrees");
  ExpectProblem(Append("m-1", Body({E("Paid", {{"amount", 1}})}), {{"If-Match", "\"x\""}}), 400,
                "If-Match");
}

TEST_F(SidecarApi, DeletedEntityAnswers410) {
  ASSERT_EQ(Append("d-1", Body({E("Created", {{"customerId", "c"}}), E("Deleted")})).status, 201);
  auto state = Get("/v1/streams/orders/entities/d-1");
  ExpectProblem(state, 410, "deleted");
  EXPECT_EQ(state.json()["currentVersion"], 2);
  ExpectProblem(Append("d-1", Body({E("Paid", {{"amount", 1}})})), 410, "deleted");
  EXPECT_EQ(Get("/v1/streams/orders/entities/d-1?version=1").status, 200);
}

TEST_F(SidecarApi, ReadOnlyStreamAnswers403AndUnknownStream404) {
  ExpectProblem(Post("/v1/streams/audit/entities/x/events", Body({E("A")}).dump()), 403,
                "may only read stream audit");
  ExpectProblem(Post("/v1/streams/nope/entities/x/events", Body({E("A")}).dump()), 404,
                "stream nope is not configured");
  ExpectProblem(Get("/v1/streams/nope/events"), 404, "stream nope");
  ExpectProblem(Get("/v1/streams/orders/entities/never-written"), 404, "has no events");
  ExpectProblem(Get("/v1/nothing/here"), 404, "no route");
}

TEST_F(SidecarApi, WrongMethodAnswers405WithAllow) {
  auto r = RawRequest(proc_->port(), "DELETE", "/v1/streams");
  ExpectProblem(r, 405, "not supported");
  EXPECT_EQ(r.header("allow"), "GET");
}

TEST_F(SidecarApi, LimitsAnswer413) {
  std::string big = Body({E("ItemAdded", {{"item", std::string(1100000, 'x')}})}).dump();
  ExpectProblem(Post("/v1/streams/orders/entities/big/events", big), 413, "limit is 1048576");
  std::vector<Json> many(1001, E("ItemAdded", {{"item", 1}}));
  ExpectProblem(Append("many", Body(many)), 413, "at most 1000 events");
  ExpectProblem(Get("/v1/streams?x=" + std::string(9000, 'a')), 414, "limit");
  ExpectProblem(Get("/v1/streams", {{"X-Big", std::string(20000, 'h')}}), 431, "limit");
}

TEST_F(SidecarApi, WrongOrMissingContentTypeAnswers415) {
  std::string body = Body({E("Created", {{"customerId", "c"}})}).dump();
  ExpectProblem(
      Post("/v1/streams/orders/entities/ct/events", body, {{"Content-Type", "text/plain"}}), 415,
      "text/plain");
  ExpectProblem(RawRequest(proc_->port(), "POST", "/v1/streams/orders/entities/ct/events", body,
                           {{"Content-Type", ""}}),
                415, "application/json");
  EXPECT_EQ(Post("/v1/streams/orders/entities/ct/events", body,
                 {{"Content-Type", "application/json; charset=utf-8"}})
                .status,
            201);
}

TEST_F(SidecarApi, RuleViolationsAnswer422) {
  ExpectProblem(Append("s-1", Body({E("Created", Json::object())})), 422, "customerId");
  ExpectProblem(Append("s-2", Body({E("Paid", {{"amount", 1}})})), 422,
                "not allowed in state \"new\"");
  ASSERT_EQ(Append("s-3", Body({E("Created", {{"customerId", "c"}})})).status, 201);
  auto r = Append("s-3", Body({E("Paid", {{"amount", "lots"}})}));
  ExpectProblem(r, 422, "increment needs a number");
  EXPECT_EQ(r.json()["rule"], "reducers.Paid");
}

TEST_F(SidecarApi, NonLoopbackHostIsRefused) {
  ExpectProblem(Get("/v1/streams", {{"Host", "evil.example.com"}}), 403, "not a loopback");
  ExpectProblem(Get("/v1/streams", {{"Host", "127.0.0.1.evil.com"}}), 403, "not a loopback");
  EXPECT_EQ(Get("/v1/streams", {{"Host", "localhost:4380"}}).status, 200);
  EXPECT_EQ(Get("/v1/streams", {{"Host", "[::1]:4380"}}).status, 200);
}

TEST_F(SidecarApi, BadInputIsRefusedClearlyAndStoresNothing) {
  struct Case {
    std::string name, path, body;
    int status;
    std::string detail;
  };
  const std::string p = "/v1/streams/orders/entities/bad/events";
  std::vector<Case> cases = {
      {"malformed JSON", p, "{\"events\": [", 400, "not valid JSON"},
      {"not an object", p, "[1,2]", 400, "must be a JSON object"},
      {"events not a list", p, R"({"events": {}})", 400, "events must be a list"},
      {"no events field", p, R"({"expectedVersion": "any"})", 400, "needs events"},
      {"empty events", p, R"({"events": []})", 400, "at least one event"},
      {"event not an object", p, R"({"events": [5]})", 400, "events[0] must be an object"},
      {"type not a string", p, R"({"events": [{"type": 5}]})", 400, "events[0].type must be"},
      {"missing type", p, R"({"events": [{"data": {}}]})", 400, "events[0].type is required"},
      {"bad type", p, R"({"events": [{"type": "9x"}]})", 400, "must start with a letter"},
      {"unknown event field", p, R"({"events": [{"type": "A", "colour": 1}]})", 400,
       "unknown field \"colour\""},
      {"unknown body field", p, R"({"events": [{"type": "A"}], "expected": 1})", 400,
       "unknown field \"expected\""},
      {"metadata not strings", p, R"({"events": [{"type": "A", "metadata": {"k": 1}}]})", 400,
       "metadata.k must be a string"},
      {"bad metadata key", p, R"({"events": [{"type": "A", "metadata": {"Bad-Key": "v"}}]})", 400,
       "lowercase letters and digits"},
      {"bad expectedVersion", p, R"({"expectedVersion": "latest", "events": [{"type": "A"}]})", 400,
       "expectedVersion must be"},
      {"negative expectedVersion", p, R"({"expectedVersion": -1, "events": [{"type": "A"}]})", 400,
       "expectedVersion must be"},
      {"huge number", p, R"({"events": [{"type": "A", "data": {"n": 1e999}}]})", 400,
       "not valid JSON"},
      {"invalid UTF-8", p, "{\"events\": [{\"type\": \"A\", \"data\": \"\xff\xfe\"}]}", 400,
       "not valid JSON"},
      {"empty id", p, R"({"events": [{"type": "A", "id": ""}]})", 400, "must not be empty"},
      {"duplicate ids", p, R"({"events": [{"type": "A", "id": "x"}, {"type": "B", "id": "x"}]})",
       400, "appears twice"},
      {"entity with space", "/v1/streams/orders/entities/a%20b/events",
       R"({"events":[{"type":"A"}]})", 400, "without whitespace"},
      {"entity with slash", "/v1/streams/orders/entities/a%2Fb/events",
       R"({"events":[{"type":"A"}]})", 400, "must not contain '/'"},
      {"entity with star", "/v1/streams/orders/entities/a*/events", R"({"events":[{"type":"A"}]})",
       400, "must not contain '*'"},
      {"entity with gt", "/v1/streams/orders/entities/a%3E/events", R"({"events":[{"type":"A"}]})",
       400, "must not contain '>'"},
      {"entity of 201 bytes", "/v1/streams/orders/entities/" + std::string(201, 'e') + "/events",
       R"({"events":[{"type":"A"}]})", 400, "1-200 bytes"},
  };
  const int64_t before = StreamEvents();
  ASSERT_GE(before, 0);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ExpectProblem(Post(c.path, c.body), c.status, c.detail);
  }
  // A malformed percent-escape is refused by the HTTP layer before routing (plain 400).
  EXPECT_EQ(Post("/v1/streams/orders/entities/a%zz/events", R"({"events":[{"type":"A"}]})").status,
            400);
  EXPECT_EQ(StreamEvents(), before);
  // A big integer that JSON can carry is data like any other.
  EXPECT_EQ(
      Append("big-int", Body({E("ItemAdded", {{"item", Json::parse("123456789012345678901")}})}))
          .status,
      201);
}

TEST_F(SidecarApi, BadQueryParametersAnswer400) {
  ExpectProblem(Get("/v1/streams/orders/events?from=-1"), 400, "from must be");
  ExpectProblem(Get("/v1/streams/orders/events?limit=0"), 400, "limit must be between 1 and 1000");
  ExpectProblem(Get("/v1/streams/orders/events?limit=1001"), 400, "limit must be between");
  ExpectProblem(Get("/v1/streams/orders/events?types=9x"), 400, "must start with a letter");
  ExpectProblem(Get("/v1/streams/orders/entities/a-1?at=yesterday"), 400, "RFC 3339");
  ExpectProblem(Get("/v1/streams/orders/entities/a-1?version=abc"), 400, "version must be");
  ExpectProblem(Get("/v1/streams/orders/entities/a-1?version=1&at=2026-01-01T00:00:00Z"), 400,
                "cannot be combined");
  ExpectProblem(Get("/v1/streams/orders/entities/a-1?consistency=linear"), 400,
                "eventual or strong");
  ExpectProblem(Get("/v1/streams/orders/entities/a-1?consistency=strong%"), 400,
                "bad percent-encoding");
  ExpectProblem(Get("/v1/streams/orders/events?limit=1%zz"), 400, "bad percent-encoding");
  ExpectProblem(Get("/v1/streams/orders/entities/a-1?consistency"), 400, "eventual or strong");
}

TEST_F(SidecarApi, EntityReadsPageAndFoldAtVersionAndTime) {
  ASSERT_EQ(Append("t-1", Body({E("Created", {{"customerId", "c"}})})).status, 201);
  auto second = Append("t-1", Body({E("ItemAdded", {{"item", 1}}), E("ItemAdded", {{"item", 2}})}));
  ASSERT_EQ(second.status, 201);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(Append("t-1", Body({E("Paid", {{"amount", 9}})})).status, 201);

  auto page = Get("/v1/streams/orders/entities/t-1/events?fromVersion=1&limit=2");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.json()["events"].size(), 3u);  // the second commit is not split
  EXPECT_EQ(page.json()["next"], 4);
  EXPECT_EQ(page.json()["version"], 4);
  auto rest = Get("/v1/streams/orders/entities/t-1/events?fromVersion=4");
  EXPECT_EQ(rest.json()["events"].size(), 1u);
  EXPECT_TRUE(rest.json()["next"].is_null());

  auto now = Get("/v1/streams/orders/entities/t-1");
  ASSERT_EQ(now.status, 200);
  EXPECT_EQ(now.json()["version"], 4);
  EXPECT_EQ(now.json()["status"], "paid");
  EXPECT_EQ(now.json()["state"]["items"], Json::parse("[1,2]"));
  EXPECT_EQ(now.header("etag"), "\"4\"");
  EXPECT_EQ(Get("/v1/streams/orders/entities/t-1", {{"If-None-Match", "\"4\""}}).status, 304);

  auto v3 = Get("/v1/streams/orders/entities/t-1?version=3");
  EXPECT_EQ(v3.json()["version"], 3);
  EXPECT_EQ(v3.json()["status"], "created");
  EXPECT_FALSE(v3.json()["state"].contains("paid"));

  std::string at = page.json()["events"][2]["time"];
  auto at_state = Get("/v1/streams/orders/entities/t-1?at=" + at);
  ASSERT_EQ(at_state.status, 200) << at_state.body;
  EXPECT_EQ(at_state.json()["version"], 3);
  ExpectProblem(Get("/v1/streams/orders/entities/t-1?at=2000-01-01T00:00:00Z"), 404,
                "no events at");
}

TEST_F(SidecarApi, StreamReadsAreOrderedAndFilteredByType) {
  auto start = Get("/v1/streams/orders/events?limit=1000");
  int64_t from = start.json()["next"];
  ASSERT_EQ(Append("f-1", Body({E("Created", {{"customerId", "c"}})})).status, 201);
  ASSERT_EQ(Append("f-1", Body({E("ItemAdded", {{"item", 1}})})).status, 201);
  ASSERT_EQ(Append("f-2", Body({E("Created", {{"customerId", "d"}})})).status, 201);
  auto all = Get("/v1/streams/orders/events?from=" + std::to_string(from));
  ASSERT_EQ(all.json()["events"].size(), 3u);
  int64_t last = from;
  const Json all_body = all.json();
  for (const auto& e : all_body["events"]) {
    EXPECT_GT(e["sidelogposition"].get<int64_t>(), last);
    last = e["sidelogposition"];
    EXPECT_EQ(e["specversion"], "1.0");
    EXPECT_EQ(e["source"], "/namespaces/it/services/test");
  }
  auto created = Get("/v1/streams/orders/events?types=Created&from=" + std::to_string(from));
  EXPECT_EQ(created.json()["events"].size(), 2u);
  EXPECT_EQ(created.json()["next"], last);
}

TEST_F(SidecarApi, ListsEntitiesByPrefix) {
  for (auto id : {"p-x1", "p-x2", "p-y1"}) {
    ASSERT_EQ(Append(id, Body({E("Created", {{"customerId", "c"}})})).status, 201);
  }
  auto page = Get("/v1/streams/orders/entities?prefix=p-x&limit=1");
  ASSERT_EQ(page.status, 200);
  ASSERT_EQ(page.json()["entities"].size(), 1u);
  EXPECT_EQ(page.json()["entities"][0]["id"], "p-x1");
  auto next = Get("/v1/streams/orders/entities?prefix=p-x&limit=1&after=p-x1");
  EXPECT_EQ(next.json()["entities"][0]["id"], "p-x2");
}

TEST_F(SidecarApi, StreamsAndStatusDescribeTheSidecar) {
  auto streams = Get("/v1/streams");
  ASSERT_EQ(streams.status, 200);
  ASSERT_EQ(streams.json()["streams"].size(), 2u);
  EXPECT_EQ(streams.json()["streams"][1]["access"], "read");
  auto status = Get("/v1/status");
  ASSERT_EQ(status.status, 200);
  EXPECT_EQ(status.json()["mode"], "standalone");
  EXPECT_EQ(status.json()["ready"], true);
  EXPECT_EQ(status.json()["log"]["durability"], "fsync");
}

TEST_F(SidecarApi, HealthListenerServesOnlyHealthAndMetrics) {
  int hp = proc_->health_port();
  EXPECT_EQ(RawRequest(hp, "GET", "/livez").status, 200);
  EXPECT_EQ(RawRequest(hp, "GET", "/readyz").status, 200);
  EXPECT_EQ(RawRequest(hp, "GET", "/metrics").status, 200);
  EXPECT_EQ(RawRequest(hp, "GET", "/v1/streams").status, 404);
  // Kubelet probes come with the pod IP as Host: no loopback check on this listener.
  EXPECT_EQ(RawRequest(hp, "GET", "/readyz", "", {{"Host", "10.1.2.3:4381"}}).status, 200);
}

TEST_F(SidecarApi, MetricsLabelRoutesByTemplate) {
  ASSERT_EQ(Append("metric-entity-42", Body({E("Created", {{"customerId", "c"}})})).status, 201);
  ASSERT_EQ(Append("metric-entity-42", Body({E("Created", {{"customerId", "c"}})}, "none")).status,
            409);
  ASSERT_EQ(Get("/v1/streams/orders/entities/metric-entity-42").status, 200);
  auto m = RawRequest(proc_->health_port(), "GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.header("content-type").find("text/plain"), std::string::npos);
  EXPECT_NE(m.body.find("route=\"/v1/streams/{stream}/entities/{entity}/events\""),
            std::string::npos);
  EXPECT_EQ(m.body.find("metric-entity-42"), std::string::npos);
  for (const char* name :
       {"sidelog_http_requests_total", "sidelog_http_request_duration_seconds_bucket",
        "sidelog_appends_total", "sidelog_events_appended_total", "sidelog_fold_duration_seconds",
        "sidelog_log_size_bytes"}) {
    EXPECT_NE(m.body.find(name), std::string::npos) << name;
  }
  EXPECT_NE(m.body.find("sidelog_appends_total{stream=\"orders\",result=\"conflict\"}"),
            std::string::npos);
  // The commit just appended waits in memory for its entity index entry (32,768 may).
  EXPECT_EQ(m.body.find("sidelog_stream_unindexed_commits{stream=\"orders\"} 0\n"),
            std::string::npos);
  EXPECT_NE(m.body.find("sidelog_stream_unindexed_commits{stream=\"orders\"} "), std::string::npos);
}

// Runs the sidecar of `proc` to its exit (for configurations it must refuse, or until SIGTERM
// `term_after` its start): the wait status, what it wrote to stderr, and how long it took to
// exit after the SIGTERM.
struct Exited {
  int status = 0;
  std::string stderr_text;
  std::chrono::milliseconds after_term{0};
};
Exited RunToExit(const SidecarProcess& proc,
                 std::optional<std::chrono::milliseconds> term_after = std::nullopt) {
  pid_t pid = fork();
  if (pid == 0) {
    freopen((proc.dir() + "/out.log").c_str(), "w", stderr);
    execl(SIDELOG_SIDECAR_BIN, "sidelog-sidecar", "--config",
          (proc.dir() + "/sidecar.yaml").c_str(), nullptr);
    _exit(127);
  }
  Exited e;
  auto termed = std::chrono::steady_clock::now();
  if (term_after) {
    std::this_thread::sleep_for(*term_after);
    kill(pid, SIGTERM);
    termed = std::chrono::steady_clock::now();
  }
  waitpid(pid, &e.status, 0);
  e.after_term = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - termed);
  std::ifstream in(proc.dir() + "/out.log");
  e.stderr_text.assign(std::istreambuf_iterator<char>(in), {});
  return e;
}

TEST(SidecarConfig, BadConfigExitsWithAClearMessage) {
  SidecarProcess proc("streams:\n  - name: orders\n    access: admin\n");
  Exited e = RunToExit(proc);
  ASSERT_TRUE(WIFEXITED(e.status));
  EXPECT_EQ(WEXITSTATUS(e.status), 2);
  EXPECT_NE(e.stderr_text.find("streams[0].access: \"admin\" is not one of read, write"),
            std::string::npos)
      << e.stderr_text;
}

// A local config that still names a transition's event with `on` starts, enforces the
// transition, and logs at startup a warning naming the file, the line and the field.
TEST(SidecarConfig, ADeprecatedOnStartsAndIsLoggedAsAWarning) {
  std::string streams = kTestStreams;
  streams.replace(streams.find("{event: Paid"), 7, "{on:");
  SidecarProcess proc(streams);
  proc.Start();
  auto paid = RawRequest(proc.port(), "POST", "/v1/streams/orders/entities/o1/events",
                         R"({"events":[{"type":"Paid","data":{"amount":1}}]})");
  EXPECT_EQ(paid.status, 422) << "Paid is allowed only from created: " << paid.body;
  Json warning;
  std::istringstream lines(proc.Log());
  for (std::string line; std::getline(lines, line);) {
    auto j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.value("level", "") == "warn") warning = j;
  }
  ASSERT_TRUE(warning.is_object()) << proc.Log();
  EXPECT_EQ(warning["file"], proc.dir() + "/sidecar.yaml");
  EXPECT_EQ(warning["field"], "streams[0].entity.stateMachine.transitions[1].on");
  EXPECT_TRUE(warning["line"].is_number_integer());
  EXPECT_NE(warning.value("msg", "").find("write event"), std::string::npos) << warning.dump();
  proc.Kill(SIGTERM);
}

// A sidecar that cannot bind its port (another process holds it) says so and exits 1, after
// closing what it had opened: no crash on the way out.
TEST(SidecarConfig, ABusyPortExitsWithAClearMessage) {
  SidecarProcess proc;
  const int holder = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(holder, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(proc.port()));
  ASSERT_EQ(bind(holder, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(holder, 1), 0);
  Exited e = RunToExit(proc);
  close(holder);
  ASSERT_TRUE(WIFEXITED(e.status)) << "killed by signal " << WTERMSIG(e.status);
  EXPECT_EQ(WEXITSTATUS(e.status), 1);
  EXPECT_NE(e.stderr_text.find("cannot listen on 127.0.0.1:" + std::to_string(proc.port()) +
                               ": bind: Address already in use"),
            std::string::npos)
      << e.stderr_text;
}

// With NATS unreachable, a replicated sidecar waits up to 10 s at startup for the connection
// and its catch-up before it reports ready. A SIGTERM meanwhile ends that wait: the process
// exits 0 at once instead of after it.
TEST(SidecarShutdown, ATermDuringTheStartupWaitForNatsExitsAtOnce) {
  SidecarProcess proc(kTestStreams,
                      "nats: {url: \"nats://127.0.0.1:" + std::to_string(FreePort()) + "\"}\n");
  Exited e = RunToExit(proc, std::chrono::milliseconds(500));
  ASSERT_TRUE(WIFEXITED(e.status)) << "killed by signal " << WTERMSIG(e.status);
  EXPECT_EQ(WEXITSTATUS(e.status), 0) << e.stderr_text;
  EXPECT_LT(e.after_term.count(), 5000) << "the startup wait lasts 10 s";
  EXPECT_NE(e.stderr_text.find("\"msg\":\"stopped\""), std::string::npos) << e.stderr_text;
}

}  // namespace
}  // namespace sidelog::testing
