// The consolidator's config: what loads, and every refusal naming file:line and the field.
#include "config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

namespace sidelog::consolidator {
namespace {

constexpr const char* kGood = R"(name: order-summary
sidecar: {url: "http://127.0.0.1:4380/"}
sources:
  - stream: orders
  - stream: customers
    types: [CustomerRenamed, CustomerRegistered]
target:
  sqlite: {path: /tmp/x.db}
schema: |
  CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total REAL);
handlers:
  - event: orders/OrderCreated
    sql: INSERT INTO orders (id, total) VALUES (:entity, 0)
  - event: orders/ItemAdded
    sql: |
      UPDATE orders SET total = total + :data.item.price WHERE id = :entity;
      UPDATE orders SET total = total WHERE id = :entity
  - event: customers/CustomerRenamed
    sql: UPDATE orders SET total = total WHERE id = :meta.correlationid
queries:
  order: SELECT * FROM orders WHERE id = :id
batch: {maxEvents: 100, maxDelay: 50ms}
onError: skip
)";

// Replaces the first occurrence of `from` in kGood.
std::string With(const std::string& from, const std::string& to) {
  std::string s = kGood;
  auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

// The message of the error loading `yaml`, which must fail.
std::string ErrorOf(const std::string& yaml) {
  auto c = ParseConsolidatorConfig(yaml, "cons.yaml");
  EXPECT_FALSE(c.ok()) << "loaded, but should not:\n" << yaml;
  return c.ok() ? "" : c.status().message();
}

TEST(ConsolidatorConfig, LoadsAGoodConfig) {
  auto c = ParseConsolidatorConfig(kGood, "cons.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->name, "order-summary");
  EXPECT_EQ(c->sidecar_url, "http://127.0.0.1:4380");
  EXPECT_EQ(c->listen, "127.0.0.1:4390");
  ASSERT_EQ(c->sources.size(), 2u);
  // Without `types`, a source reads the types its handlers name.
  EXPECT_EQ(c->sources[0].types, (std::vector<std::string>{"OrderCreated", "ItemAdded"}));
  EXPECT_EQ(c->sources[1].types,
            (std::vector<std::string>{"CustomerRenamed", "CustomerRegistered"}));
  ASSERT_TRUE(c->sqlite.has_value());
  EXPECT_EQ(c->sqlite->path, "/tmp/x.db");
  ASSERT_EQ(c->handlers.size(), 3u);
  EXPECT_EQ(c->handlers[1].stream, "orders");
  EXPECT_EQ(c->handlers[1].type, "ItemAdded");
  ASSERT_EQ(c->queries.size(), 1u);
  EXPECT_EQ(c->max_batch_events, 100);
  EXPECT_EQ(c->max_batch_delay, std::chrono::milliseconds(50));
  EXPECT_EQ(c->on_error, OnError::kSkip);
}

TEST(ConsolidatorConfig, LoadsTheShopExample) {
  auto c =
      LoadConsolidatorConfig(std::string(SIDELOG_SOURCE_DIR) + "/examples/shop/order-summary.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->name, "order-summary");
  EXPECT_EQ(c->sources.size(), 2u);
  EXPECT_EQ(c->queries.size(), 3u);
}

TEST(ConsolidatorConfig, HandlerOnAnUnknownSourceNamesFileLineAndSources) {
  std::string msg = ErrorOf(With("event: customers/CustomerRenamed", "event: billing/Paid"));
  EXPECT_EQ(msg.rfind("cons.yaml:18: handlers[2].event:", 0), 0u) << msg;
  EXPECT_NE(msg.find("not a source (sources: orders, customers)"), std::string::npos) << msg;
}

TEST(ConsolidatorConfig, AGoodConfigHasNoWarnings) {
  auto c = ParseConsolidatorConfig(kGood, "cons.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_TRUE(c->warnings.empty());
}

TEST(ConsolidatorConfig, AHandlerWithoutEventNamesTheField) {
  std::string msg = ErrorOf(With("  - event: orders/ItemAdded\n    sql:", "  - sql:"));
  EXPECT_EQ(msg.rfind("cons.yaml:14: handlers[1].event: is required: <stream>/<Type>", 0), 0u)
      << msg;
}

// `on` still loads from a local file, so configs written before `event` keep working, and each
// use is a warning naming the file, the line and the field.
TEST(ConsolidatorConfig, OnInAHandlerIsADeprecatedAliasWithAWarning) {
  auto c =
      ParseConsolidatorConfig(With("event: orders/ItemAdded", "on: orders/ItemAdded"), "cons.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  ASSERT_EQ(c->handlers.size(), 3u);
  EXPECT_EQ(c->handlers[1].stream, "orders");
  EXPECT_EQ(c->handlers[1].type, "ItemAdded");
  ASSERT_EQ(c->warnings.size(), 1u);
  EXPECT_EQ(c->warnings[0].file, "cons.yaml");
  EXPECT_EQ(c->warnings[0].line, 14);
  EXPECT_EQ(c->warnings[0].field, "handlers[1].on");
  EXPECT_NE(c->warnings[0].message.find("write event"), std::string::npos)
      << c->warnings[0].message;
  // Errors in an aliased handler name the key as written.
  std::string msg = ErrorOf(With("event: orders/ItemAdded", "on: billing/Paid"));
  EXPECT_EQ(msg.rfind("cons.yaml:14: handlers[1].on: \"billing/Paid\" names stream billing", 0), 0u)
      << msg;
}

TEST(ConsolidatorConfig, AHandlerWithBothOnAndEventIsRefused) {
  std::string msg =
      ErrorOf(With("event: orders/ItemAdded", "event: orders/ItemAdded\n    on: orders/ItemAdded"));
  EXPECT_EQ(msg.rfind("cons.yaml:15: handlers[1].on: is the deprecated name of event: give only "
                      "event",
                      0),
            0u)
      << msg;
}

TEST(ConsolidatorConfig, AHandlerForATypeItsSourceDoesNotReadIsAWarning) {
  auto c = ParseConsolidatorConfig(
      With("types: [CustomerRenamed, CustomerRegistered]", "types: [CustomerRegistered]"),
      "cons.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  ASSERT_EQ(c->warnings.size(), 1u);
  EXPECT_EQ(c->warnings[0].line, 18);
  EXPECT_EQ(c->warnings[0].field, "handlers[2]");
  EXPECT_NE(c->warnings[0].message.find("never runs"), std::string::npos) << c->warnings[0].message;
}

TEST(ConsolidatorConfig, UnknownParameterNameNamesFileLineAndAllowedForms) {
  std::string msg = ErrorOf(With(":data.item.price", ":price"));
  EXPECT_EQ(msg.rfind("cons.yaml:16: handlers[1].sql: :price is not a handler parameter", 0), 0u)
      << msg;
  EXPECT_NE(msg.find(":meta.<key>"), std::string::npos);
}

TEST(ConsolidatorConfig, UnknownFieldsAreRefused) {
  std::string msg = ErrorOf(With("onError: skip", "onErrors: skip"));
  EXPECT_EQ(msg.rfind("cons.yaml:23: onErrors: unknown field", 0), 0u) << msg;
  msg = ErrorOf(With("    sql: INSERT", "    sqlx: 1\n    sql: INSERT"));
  EXPECT_EQ(msg.rfind("cons.yaml:13: handlers[0].sqlx: unknown field", 0), 0u) << msg;
}

TEST(ConsolidatorConfig, ReadsFromJetStreamWithNatsAndANamespace) {
  auto push = ParseConsolidatorConfig(
      With("sidecar: {url: \"http://127.0.0.1:4380/\"}",
           "namespace: shop\nnats: {url: \"nats://a:4222,nats://b:4222\", credsFile: /c}"),
      "cons.yaml");
  ASSERT_TRUE(push.ok()) << push.status().message();
  EXPECT_EQ(push->delivery, Delivery::kPush) << "push is the default";
  EXPECT_EQ(push->ns, "shop");
  ASSERT_TRUE(push->nats.has_value());
  EXPECT_EQ(push->nats->url, "nats://a:4222,nats://b:4222");
  EXPECT_EQ(push->nats->creds_file, "/c");
  auto pull = ParseConsolidatorConfig(
      With("sidecar: {url: \"http://127.0.0.1:4380/\"}",
           "namespace: shop\ndelivery: pull\nnats: {url: \"nats://a:4222\"}"),
      "cons.yaml");
  ASSERT_TRUE(pull.ok()) << pull.status().message();
  EXPECT_EQ(pull->delivery, Delivery::kPull);
}

TEST(ConsolidatorConfig, ASourceOfEventsMustBeGivenOnceAndDeliveryGoesWithNats) {
  std::string msg = ErrorOf(With("sidecar: {url: \"http://127.0.0.1:4380/\"}", "delivery: pull"));
  EXPECT_EQ(msg.rfind("cons.yaml:2: delivery:", 0), 0u) << msg;
  EXPECT_NE(msg.find("give nats"), std::string::npos) << msg;
  msg = ErrorOf(With("sidecar: {url: \"http://127.0.0.1:4380/\"}\n", ""));
  EXPECT_NE(msg.find("a source of events is required"), std::string::npos) << msg;
  msg = ErrorOf(With("sidecar: {url: \"http://127.0.0.1:4380/\"}",
                     "sidecar: {url: \"http://127.0.0.1:4380/\"}\nnats: {url: \"nats://a:4222\"}"));
  EXPECT_NE(msg.find("not both"), std::string::npos) << msg;
  msg =
      ErrorOf(With("sidecar: {url: \"http://127.0.0.1:4380/\"}", "nats: {url: \"nats://a:4222\"}"));
  EXPECT_NE(msg.find("namespace: is required"), std::string::npos) << msg;
  msg = ErrorOf(With("sidecar: {url: \"http://127.0.0.1:4380/\"}",
                     "namespace: shop\nnats: {url: \"http://a:4222\"}"));
  EXPECT_NE(msg.find("nats.url: \"http://a:4222\" must start with nats:// or tls://"),
            std::string::npos)
      << msg;
  msg = ErrorOf(With("sidecar: {url: \"http://127.0.0.1:4380/\"}",
                     "namespace: shop\nnats: {url: \"nats://a:4222\", createStreams: true}"));
  EXPECT_NE(msg.find("unknown field \"createStreams\""), std::string::npos) << msg;
}

TEST(ConsolidatorConfig, SqlThatDoesNotTokenizeNamesTheLine) {
  std::string msg = ErrorOf(With("WHERE id = :entity;\n", "WHERE id = :entity;\n      'oops\n"));
  EXPECT_EQ(msg.rfind("cons.yaml:17: handlers[1].sql: unterminated string literal", 0), 0u) << msg;
}

TEST(ConsolidatorConfig, QueriesTakeSimpleNamesAndOneStatement) {
  std::string msg = ErrorOf(With("WHERE id = :id", "WHERE id = :data.id"));
  EXPECT_EQ(msg.rfind("cons.yaml:21: queries.order: :data.id is not a query parameter", 0), 0u)
      << msg;
  msg = ErrorOf(With("WHERE id = :id", "WHERE id = :id; DELETE FROM orders"));
  EXPECT_NE(msg.find("exactly one statement"), std::string::npos) << msg;
  msg = ErrorOf(With("  order: SELECT", "  Order: SELECT"));
  EXPECT_NE(msg.find("must match"), std::string::npos) << msg;
}

TEST(ConsolidatorConfig, TargetNeedsExactlyOneDatabase) {
  std::string msg = ErrorOf(With("  sqlite: {path: /tmp/x.db}",
                                 "  sqlite: {path: /tmp/x.db}\n  postgres: {connection: x}"));
  EXPECT_EQ(msg.rfind("cons.yaml:7: target: must set exactly one of sqlite, postgres", 0), 0u)
      << msg;
}

TEST(ConsolidatorConfig, PostgresConnectionFromTheEnvironment) {
  setenv("SIDELOG_TEST_PG", "host=127.0.0.1 port=1", 1);
  auto c = ParseConsolidatorConfig(
      With("  sqlite: {path: /tmp/x.db}", "  postgres: {connectionEnv: SIDELOG_TEST_PG}"), "c");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->postgres->connection, "host=127.0.0.1 port=1");
  EXPECT_EQ(c->postgres->schema, "order_summary");  // from the name
  std::string msg = ErrorOf(
      With("  sqlite: {path: /tmp/x.db}", "  postgres: {connectionEnv: SIDELOG_TEST_UNSET_VAR}"));
  EXPECT_EQ(msg.rfind("cons.yaml:8: target.postgres.connectionEnv: the environment variable "
                      "SIDELOG_TEST_UNSET_VAR is not set",
                      0),
            0u)
      << msg;
}

TEST(ConsolidatorConfig, BatchAndOnErrorAreChecked) {
  EXPECT_NE(ErrorOf(With("maxDelay: 50ms", "maxDelay: fast")).find("batch.maxDelay"),
            std::string::npos);
  EXPECT_NE(ErrorOf(With("maxEvents: 100", "maxEvents: 0")).find("batch.maxEvents"),
            std::string::npos);
  EXPECT_NE(ErrorOf(With("maxDelay: 50ms", "maxDelay: 2h")).find("at most 1h"), std::string::npos);
  EXPECT_NE(ErrorOf(With("onError: skip", "onError: retry")).find("stop, skip"), std::string::npos);
}

TEST(ConsolidatorConfig, MoreThanOneReplicaNeedsPostgres) {
  std::string msg = ErrorOf(std::string(kGood) + "replicas: 2\n");
  EXPECT_NE(msg.find("replicas > 1 needs a PostgreSQL target"), std::string::npos) << msg;
  auto pg = ParseConsolidatorConfig(
      With("  sqlite: {path: /tmp/x.db}", "  postgres: {connection: \"host=/tmp\", schema: s}") +
          "replicas: 3\n",
      "cons.yaml");
  ASSERT_TRUE(pg.ok()) << pg.status().message();
  EXPECT_EQ(pg->replicas, 3);
  EXPECT_NE(ErrorOf(std::string(kGood) + "replicas: 6\n").find("from 1 to 5"), std::string::npos);
}

}  // namespace
}  // namespace sidelog::consolidator
