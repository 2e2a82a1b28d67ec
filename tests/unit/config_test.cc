#include "sidelog/config.h"

#include <gtest/gtest.h>

namespace sidelog {
namespace {

constexpr const char* kGood = R"(
service: billing
namespace: shop
listen: 127.0.0.1:4380
healthListen: 0.0.0.0:4381
dataDir: /var/lib/sidelog
nats: {url: "nats://nats.sidelog-system:4222", credsFile: /etc/creds, tls: {ca: /ca.pem}}
limits: {maxBodyBytes: 2097152}
streams:
  - name: payments
    access: write
    entity:
      reducers:
        PaymentReceived: [{op: increment, path: /paid, from: /amount}]
        Flagged: [{op: set, path: /flag, value: "yes"}]
      stateMachine:
        initial: new
        strict: true
        transitions:
          - {event: PaymentReceived, from: [new, partial], to: partial}
      schemas:
        PaymentReceived: {type: object, required: [amount]}
  - name: orders
    access: read
    types: [OrderCreated, OrderPaid]
)";

TEST(Config, LoadsTheDesignExample) {
  auto c = ParseSidecarConfig(kGood, "billing.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->service, "billing");
  EXPECT_EQ(c->ns, "shop");
  ASSERT_TRUE(c->nats.has_value());
  EXPECT_EQ(c->nats->url, "nats://nats.sidelog-system:4222");
  EXPECT_EQ(c->nats->tls.ca, "/ca.pem");
  EXPECT_EQ(c->nats->publish_timeout_ms, 5000) << "the default";
  EXPECT_EQ(c->limits.max_body_bytes, 2097152);
  EXPECT_EQ(c->limits.max_events_per_commit, 1000);
  ASSERT_EQ(c->streams.size(), 2u);
  EXPECT_EQ(c->streams[0].access, StreamAccess::kWrite);
  EXPECT_EQ(c->streams[1].access, StreamAccess::kRead);
  EXPECT_EQ(c->streams[1].types, (std::vector<std::string>{"OrderCreated", "OrderPaid"}));
  EXPECT_TRUE(c->streams[0].rules->has_state_machine());
  // YAML scalars keep their JSON types; quoted scalars stay strings.
  EXPECT_EQ(c->streams[0].entity["reducers"]["Flagged"][0]["value"], "yes");
  EXPECT_TRUE(c->streams[0].entity["stateMachine"]["strict"].is_boolean());
}

TEST(Config, CurrentRulesLoadWithoutWarnings) {
  auto c = ParseSidecarConfig(kGood, "billing.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_TRUE(c->warnings.empty());
}

// `on` still loads from a local file, so configs written before `event` keep working, and each
// use is a warning naming the file, the line and the field.
constexpr const char* kWithOn = R"(streams:
  - name: payments
    access: write
    entity:
      stateMachine:
        initial: new
        transitions:
          - {event: PaymentRequested, from: [new], to: requested}
          - {on: PaymentReceived, from: [requested], to: received}
)";

TEST(Config, OnInATransitionIsADeprecatedAliasWithAWarning) {
  auto c = ParseSidecarConfig(kWithOn, "billing.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  const auto& rules = *c->streams[0].rules;
  EntityState s = rules.Initial();
  ASSERT_TRUE(rules.Apply(&s, "PaymentRequested", Json::object(), Rules::Mode::kAppend).ok());
  ASSERT_TRUE(rules.Apply(&s, "PaymentReceived", Json::object(), Rules::Mode::kAppend).ok());
  EXPECT_EQ(s.status, "received");
  ASSERT_EQ(c->warnings.size(), 1u);
  EXPECT_EQ(c->warnings[0].file, "billing.yaml");
  EXPECT_EQ(c->warnings[0].line, 9);
  EXPECT_EQ(c->warnings[0].field, "streams[0].entity.stateMachine.transitions[1].on");
  EXPECT_NE(c->warnings[0].message.find("write event"), std::string::npos)
      << c->warnings[0].message;
}

TEST(Config, RulesWrittenWithOnHashAsTheSameRulesWrittenWithEvent) {
  std::string with_event = kWithOn;
  with_event.replace(with_event.find("{on:"), 4, "{event:");
  auto a = ParseSidecarConfig(kWithOn, "a.yaml");
  auto b = ParseSidecarConfig(with_event, "b.yaml");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(b->warnings.empty());
  EXPECT_EQ(a->streams[0].rules->hash(), b->streams[0].rules->hash())
      << "snapshots made under either spelling stay valid under the other";
}

TEST(Config, WarningsAreLoggedWithFileLineAndField) {
  auto c = ParseSidecarConfig(kWithOn, "billing.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  ::testing::internal::CaptureStderr();
  LogConfigWarnings(c->warnings);
  const std::string logged = ::testing::internal::GetCapturedStderr();
  auto line = Json::parse(logged.substr(0, logged.find('\n')));
  EXPECT_EQ(line["level"], "warn");
  EXPECT_EQ(line["file"], "billing.yaml");
  EXPECT_EQ(line["line"], 9);
  EXPECT_EQ(line["field"], "streams[0].entity.stateMachine.transitions[1].on");
  EXPECT_NE(line["msg"].get<std::string>().find("write event"), std::string::npos) << logged;
}

TEST(Config, StandaloneWithoutNats) {
  auto c = ParseSidecarConfig("streams: [{name: orders, access: write}]\n", "x.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_FALSE(c->nats.has_value());
  EXPECT_EQ(c->listen, "127.0.0.1:4380");
  EXPECT_EQ(c->health_listen, "0.0.0.0:4381");
}

TEST(Config, PublishTimeoutIsAGoDuration) {
  auto c = ParseSidecarConfig(
      "nats: {url: nats://x:4222, publishTimeout: 1500ms}\nstreams: [{name: a}]\n", "x.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->nats->publish_timeout_ms, 1500);
}

struct BadCase {
  const char* name;
  const char* yaml;
  const char* expect;  // a substring of the error: file, line and field
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class BadConfig : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfig, ItsErrorNamesFileLineAndField) {
  auto c = ParseSidecarConfig(GetParam().yaml, "svc.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Status::Code::kInvalid);
  EXPECT_NE(c.status().message().find(GetParam().expect), std::string::npos)
      << "got: " << c.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Rules, BadConfig,
    ::testing::Values(
        BadCase{"not_yaml", "streams: [\n", "svc.yaml:"},
        BadCase{"empty", "", "svc.yaml: the configuration is empty"},
        BadCase{"no_streams", "service: a\n", "svc.yaml:1: streams: is required"},
        BadCase{"unknown_top_field", "service: a\nstream: []\n",
                "svc.yaml:2: stream: unknown field \"stream\""},
        BadCase{"bad_stream_name", "streams:\n  - name: Orders\n",
                "svc.yaml:2: streams[0].name: stream name \"Orders\""},
        BadCase{"duplicate_stream", "streams:\n  - name: a\n  - name: a\n",
                "svc.yaml:3: streams[1].name: stream a is listed twice"},
        BadCase{"bad_access", "streams:\n  - name: a\n    access: admin\n",
                "svc.yaml:3: streams[0].access: \"admin\" is not one of read, write"},
        BadCase{"bad_type_filter", "streams:\n  - name: a\n    types: [9x]\n",
                "svc.yaml:3: streams[0].types[0]"},
        BadCase{"bad_listen", "listen: localhost\nstreams: [{name: a}]\n",
                "svc.yaml:1: listen: \"localhost\" must be host:port"},
        BadCase{"bad_durability", "durability: maybe\nstreams: [{name: a}]\n",
                "svc.yaml:1: durability: \"maybe\" is not one of fsync, normal"},
        BadCase{"bad_nats_url", "nats: {url: http://x}\nstreams: [{name: a}]\n",
                "svc.yaml:1: nats.url: \"http://x\" must start with nats://"},
        BadCase{"nats_without_url", "nats: {token: t}\nstreams: [{name: a}]\n",
                "nats.url: is required"},
        BadCase{"bad_publish_timeout",
                "nats: {url: nats://x:4222, publishTimeout: 5}\nstreams: [{name: a}]\n",
                "svc.yaml:1: nats.publishTimeout: must be a duration between 100ms and 5m"},
        BadCase{"publish_timeout_too_short",
                "nats: {url: nats://x:4222, publishTimeout: 10ms}\nstreams: [{name: a}]\n",
                "nats.publishTimeout: must be a duration between 100ms and 5m"},
        BadCase{"tls_cert_without_key",
                "nats: {url: nats://x:4222, tls: {cert: /c}}\nstreams: [{name: a}]\n",
                "nats.tls: cert and key must be given together"},
        BadCase{"limit_out_of_range", "limits: {maxBodyBytes: 10}\nstreams: [{name: a}]\n",
                "svc.yaml:1: limits.maxBodyBytes: must be between"},
        BadCase{"limit_not_int", "limits: {maxEventsPerCommit: lots}\nstreams: [{name: a}]\n",
                "limits.maxEventsPerCommit: must be an integer"},
        BadCase{"unknown_op",
                "streams:\n  - name: a\n    entity:\n      reducers:\n        X:\n"
                "          - {op: add, path: /x}\n",
                "svc.yaml:6: streams[0].entity.reducers.X[0].op: \"add\" is not one of"},
        BadCase{"op_missing_path",
                "streams:\n  - name: a\n    entity:\n      reducers:\n        X: [{op: set, value: "
                "1}]\n",
                "svc.yaml:5: streams[0].entity.reducers.X[0].path: is required"},
        BadCase{"bad_pointer",
                "streams:\n  - name: a\n    entity:\n      reducers:\n        X: [{op: unset, "
                "path: x}]\n",
                "streams[0].entity.reducers.X[0].path: \"x\" is not an RFC 6901 JSON pointer"},
        BadCase{
            "machine_without_initial",
            "streams:\n  - name: a\n    entity:\n      stateMachine:\n        transitions: []\n",
            "svc.yaml:4: streams[0].entity.stateMachine.initial: is required"},
        BadCase{"transition_without_to",
                "streams:\n  - name: a\n    entity:\n      stateMachine:\n        initial: n\n"
                "        transitions:\n          - {event: A, from: [n]}\n",
                "svc.yaml:7: streams[0].entity.stateMachine.transitions[0].to: is required"},
        BadCase{"transition_without_event",
                "streams:\n  - name: a\n    entity:\n      stateMachine:\n        initial: n\n"
                "        transitions:\n          - {from: [n], to: m}\n",
                "svc.yaml:7: streams[0].entity.stateMachine.transitions[0].event: is required"},
        BadCase{"transition_with_on_and_event",
                "streams:\n  - name: a\n    entity:\n      stateMachine:\n        initial: n\n"
                "        transitions:\n          - {event: A, on: A, from: [n], to: m}\n",
                "svc.yaml:7: streams[0].entity.stateMachine.transitions[0].on: is the deprecated "
                "name of event: give only event"},
        BadCase{"strict_not_bool",
                "streams:\n  - name: a\n    entity:\n      stateMachine:\n        initial: n\n"
                "        strict: \"yes\"\n        transitions: [{event: A, from: [n], to: m}]\n",
                "svc.yaml:6: streams[0].entity.stateMachine.strict: must be true or false"},
        BadCase{"schema_not_object",
                "streams:\n  - name: a\n    entity:\n      schemas:\n        X: [1]\n",
                "svc.yaml:5: streams[0].entity.schemas.X: must be a JSON Schema object"},
        BadCase{"unknown_entity_field", "streams:\n  - name: a\n    entity:\n      reducer: {}\n",
                "svc.yaml:4: streams[0].entity.reducer: unknown field"}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return std::string(info.param.name); });

TEST(Config, MissingFileIsAClearError) {
  auto c = LoadSidecarConfig("/nonexistent/sidelog.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("/nonexistent/sidelog.yaml"), std::string::npos);
}

}  // namespace
}  // namespace sidelog

namespace sidelog {
namespace {

TEST(Config, ADeliveryLoadsWithItsDefaultsAndEveryField) {
  auto c = ParseSidecarConfig(R"(
appPort: 8080
streams:
  - name: orders
    deliver: {path: /events}
  - name: payments
    deliver:
      path: /pay
      port: 9090
      group: pod
      ordering: none
      maxInFlight: 64
      cloudEvents: structured
      timeout: 2s
      retry: {initialBackoff: 50ms, maxBackoff: 1m, maxAttempts: 9}
)",
                              "d.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->app_port, 8080);
  EXPECT_EQ(c->app_host, "127.0.0.1");
  const DeliverConfig& d = *c->streams[0].deliver;
  EXPECT_EQ(d.path, "/events");
  EXPECT_EQ(d.port, 0);
  EXPECT_EQ(d.group, DeliverGroup::kService);
  EXPECT_EQ(d.ordering, DeliverOrdering::kEntity);
  EXPECT_EQ(d.mode, CloudEventsMode::kBinary);
  EXPECT_EQ(d.max_in_flight, 16);
  EXPECT_EQ(d.initial_backoff_ms, 100);
  EXPECT_EQ(d.max_backoff_ms, 30000);
  EXPECT_EQ(d.max_attempts, 5);
  EXPECT_EQ(d.timeout_ms, 10000);
  const DeliverConfig& p = *c->streams[1].deliver;
  EXPECT_EQ(p.port, 9090);
  EXPECT_EQ(p.group, DeliverGroup::kPod);
  EXPECT_EQ(p.ordering, DeliverOrdering::kNone);
  EXPECT_EQ(p.mode, CloudEventsMode::kStructured);
  EXPECT_EQ(p.max_in_flight, 64);
  EXPECT_EQ(p.timeout_ms, 2000);
  EXPECT_EQ(p.initial_backoff_ms, 50);
  EXPECT_EQ(p.max_backoff_ms, 60000);
  EXPECT_EQ(p.max_attempts, 9);
}

TEST(Config, ABadDeliveryNamesItsField) {
  const std::pair<const char*, const char*> cases[] = {
      {"{port: 80}", "d.yaml:3: streams[0].deliver.path: is required"},
      {"{path: events}", "streams[0].deliver.path: must be an absolute path"},
      {"{path: /e, group: all}", "streams[0].deliver.group: \"all\" is not one of service, pod"},
      {"{path: /e, ordering: total}", "streams[0].deliver.ordering: \"total\" is not one of"},
      {"{path: /e, maxInFlight: 0}", "streams[0].deliver.maxInFlight: must be between 1 and 256"},
      {"{path: /e, timeout: 1h}", "streams[0].deliver.timeout: must be a duration between"},
      {"{path: /e, retry: {initialBackoff: 2s, maxBackoff: 1s}}",
       "streams[0].deliver.retry.maxBackoff: must not be shorter than initialBackoff"},
      {"{path: /e, retry: {attempts: 3}}", "streams[0].deliver.retry.attempts: unknown field"},
      {"{path: /e, cloudEvents: xml}", "streams[0].deliver.cloudEvents: \"xml\" is not one of"},
  };
  for (const auto& [deliver, want] : cases) {
    auto c = ParseSidecarConfig(
        std::string("streams:\n  - name: orders\n    deliver: ") + deliver + "\n", "d.yaml");
    ASSERT_FALSE(c.ok()) << deliver;
    EXPECT_NE(c.status().message().find(want), std::string::npos)
        << deliver << " -> " << c.status().message();
  }
  auto c = ParseSidecarConfig("appPort: 70000\nstreams: [{name: orders}]\n", "d.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("appPort: must be between 1 and 65535"), std::string::npos);
}

}  // namespace
}  // namespace sidelog
