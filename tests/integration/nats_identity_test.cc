// Per-service NATS identities (docs/security.md) against a real nats-server in operator mode:
// the operator, account and user JWTs are the ones Sidelog's operator issues
// (operator/src/nats_identity.h). A sidecar with billing's identity reads orders and writes
// payments; everything else it tries is refused by the server itself; a wider identity works
// without restarting NATS; a revoked one is disconnected.
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <ctime>
#include <fstream>
#include <mutex>

#include "nats_identity.h"
#include "replication_util.h"
#include "sidelog/names.h"
#include "test_app.h"

namespace sidelog::testing {
namespace {

using op::NKey;
using op::NKeyRole;

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

constexpr const char* kBilling =
    "streams:\n  - name: payments\n    access: write\n  - name: orders\n    access: read\n";

// A NATS server that trusts one operator, with the system account and one account "sidelog"
// (JetStream) kept by the full resolver, which takes claim updates at run time.
class NatsIdentities : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string d = nats_.dir();
    nats_.AddConfig("operator: " + op::OperatorJwt(operator_, "sidelog", sys_.public_key(), Now()));
    nats_.AddConfig("system_account: " + sys_.public_key());
    nats_.AddConfig("resolver: {type: full, dir: \"" + d +
                    "/jwt\", allow_delete: false, interval: \"2m\"}");
    nats_.AddConfig("resolver_preload: {\n  " + sys_.public_key() + ": " + SysJwt() + "\n  " +
                    account_.public_key() + ": " + AccountJwt({}) + "\n}");
    nats_.Start();

    admin_creds_ = WriteCreds("admin", op::NatsPermissions{});
    NatsConfig admin;
    admin.url = nats_.url();
    admin.creds_file = admin_creds_;
    auto js = JetStream::Connect(admin, nullptr);
    ASSERT_TRUE(js.ok()) << js.status().message();
    admin_ = std::move(js).value();
    for (const auto& [ns, stream] : std::vector<std::pair<std::string, std::string>>{
             {"it", "orders"}, {"it", "payments"}, {"it", "refunds"}, {"other", "orders"}}) {
      auto st = admin_->CreateStream(JetStreamName(ns, stream), StreamSubjects(ns, stream));
      ASSERT_TRUE(st.ok()) << st.message();
    }
  }

  std::string SysJwt() {
    return op::AccountJwt(operator_, sys_, "SYS", /*jetstream=*/false, {}, Now());
  }
  std::string AccountJwt(const std::map<std::string, int64_t>& revocations) {
    return op::AccountJwt(operator_, account_, "sidelog", /*jetstream=*/true, revocations, Now());
  }

  // A creds file for a new user of the account with `permissions`; its key in `user`.
  std::string WriteCreds(const std::string& name, const op::NatsPermissions& permissions,
                         std::string* user_public = nullptr, const NKey* signer = nullptr) {
    NKey user = NKey::Generate(NKeyRole::kUser);
    if (user_public) *user_public = user.public_key();
    const std::string path = nats_.dir() + "/" + name + "-" + std::to_string(++creds_) + ".creds";
    std::ofstream(path) << op::CredsFile(
        op::UserJwt(signer ? *signer : account_, user.public_key(), name, permissions, Now()),
        user.seed());
    return path;
  }

  std::string Section(const std::string& creds) {
    return "nats: {url: \"" + nats_.url() + "\", credsFile: \"" + creds + "\"}\n";
  }

  uint64_t LastSeq(const std::string& stream) {
    auto info = admin_->Info(stream);
    EXPECT_TRUE(info.ok()) << info.status().message();
    return info.ok() ? info->last_seq : 0;
  }

  NatsServer nats_;
  NKey operator_ = NKey::Generate(NKeyRole::kOperator);
  NKey sys_ = NKey::Generate(NKeyRole::kAccount);
  NKey account_ = NKey::Generate(NKeyRole::kAccount);
  std::string admin_creds_;
  std::unique_ptr<JetStream> admin_;
  int creds_ = 0;
};

// A connection of its own with `creds` (and the inbox prefix its sidecar would use); `act`
// runs on it, and the answer is the first error the server sent back within 5 s ("" if none).
std::string ServerError(const std::string& url, const std::string& creds, const std::string& inbox,
                        const std::function<void(natsConnection*)>& act) {
  struct Seen {
    std::mutex mu;
    std::string error;
  } seen;
  natsOptions* opts = nullptr;
  natsOptions_Create(&opts);
  natsOptions_SetURL(opts, url.c_str());
  natsOptions_SetUserCredentialsFromFiles(opts, creds.c_str(), nullptr);
  natsOptions_SetCustomInboxPrefix(opts, inbox.c_str());
  natsOptions_SetErrorHandler(
      opts,
      [](natsConnection* nc, natsSubscription*, natsStatus, void* closure) {
        const char* text = nullptr;
        natsConnection_GetLastError(nc, &text);
        auto* s = static_cast<Seen*>(closure);
        std::lock_guard<std::mutex> lock(s->mu);
        if (s->error.empty() && text) s->error = text;
      },
      &seen);
  natsConnection* nc = nullptr;
  natsStatus s = natsConnection_Connect(&nc, opts);
  natsOptions_Destroy(opts);
  if (s != NATS_OK) return std::string("connect: ") + natsStatus_GetText(s);
  act(nc);
  natsConnection_FlushTimeout(nc, 2000);
  std::string error;
  for (int i = 0; i < 100 && error.empty(); ++i) {
    {
      std::lock_guard<std::mutex> lock(seen.mu);
      error = seen.error;
    }
    if (error.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  natsConnection_Destroy(nc);
  return error;
}

void Publish(natsConnection* nc, const std::string& subject) {
  natsConnection_PublishString(nc, subject.c_str(), "[]");
}
void Request(natsConnection* nc, const std::string& subject) {
  natsMsg* reply = nullptr;
  natsConnection_RequestString(&reply, nc, subject.c_str(), "{}", 1000);
  natsMsg_Destroy(reply);
}
void Subscribe(natsConnection* nc, const std::string& subject) {
  natsSubscription* sub = nullptr;
  natsConnection_SubscribeSync(&sub, nc, subject.c_str());
  natsConnection_FlushTimeout(nc, 2000);
  natsSubscription_Destroy(sub);
}

TEST_F(NatsIdentities, ASidecarMayWriteOnlyWhatItProducesAndTheServerRefusesTheRest) {
  SidecarProcess orders(
      kOrders,
      Section(WriteCreds("orders", op::SidecarPermissions("it", "orders", {"orders"}, {}))),
      "orders");
  orders.Start();
  auto created = Append(orders, "o1", Events("o1-1", 1));
  ASSERT_EQ(created.status, 201) << created.body;

  const auto billing = op::SidecarPermissions("it", "billing", {"payments"}, {"orders"});
  const std::string billing_creds = WriteCreds("billing", billing);
  SidecarProcess sidecar(kBilling, Section(billing_creds), "billing");
  sidecar.Start();
  // What billing is meant to do works through its identity: follow orders, write payments.
  auto read = RawRequest(sidecar.port(), "GET", "/v1/streams/orders/entities/o1?minPosition=1");
  EXPECT_EQ(read.status, 200) << read.body;
  auto paid = RawRequest(sidecar.port(), "POST", "/v1/streams/payments/entities/p1/events",
                         R"({"events":[{"type":"PaymentReceived","data":{"order":"o1"}}]})");
  EXPECT_EQ(paid.status, 201) << paid.body;
  EXPECT_EQ(RawRequest(sidecar.port(), "GET", "/v1/status").json()["nats"]["state"], "connected");

  const uint64_t orders_before = LastSeq("SIDELOG_it_orders");
  ASSERT_GE(orders_before, 1u);
  const std::string inbox = SidecarInboxPrefix("it", "billing");
  struct Attempt {
    std::string what;
    std::function<void(natsConnection*)> act;
    std::string refusal;
  };
  const std::vector<Attempt> attempts = {
      {"publish a commit to orders",
       [](natsConnection* nc) { Publish(nc, "sidelog.it.orders.o1"); },
       "Permissions Violation for Publish to \"sidelog.it.orders.o1\""},
      {"delete the orders stream",
       [](natsConnection* nc) { Request(nc, "$JS.API.STREAM.DELETE.SIDELOG_it_orders"); },
       "Permissions Violation for Publish to \"$JS.API.STREAM.DELETE.SIDELOG_it_orders\""},
      {"purge its own payments stream",
       [](natsConnection* nc) { Request(nc, "$JS.API.STREAM.PURGE.SIDELOG_it_payments"); },
       "Permissions Violation for Publish to \"$JS.API.STREAM.PURGE.SIDELOG_it_payments\""},
      {"delete a message of orders",
       [](natsConnection* nc) { Request(nc, "$JS.API.STREAM.MSG.DELETE.SIDELOG_it_orders"); },
       "Permissions Violation for Publish to \"$JS.API.STREAM.MSG.DELETE.SIDELOG_it_orders\""},
      {"change the orders stream",
       [](natsConnection* nc) { Request(nc, "$JS.API.STREAM.UPDATE.SIDELOG_it_orders"); },
       "Permissions Violation for Publish to \"$JS.API.STREAM.UPDATE.SIDELOG_it_orders\""},
      {"read another namespace's orders",
       [](natsConnection* nc) { Request(nc, "$JS.API.CONSUMER.CREATE.SIDELOG_other_orders"); },
       "Permissions Violation for Publish to \"$JS.API.CONSUMER.CREATE.SIDELOG_other_orders\""},
      {"listen to orders' subjects directly",
       [](natsConnection* nc) { Subscribe(nc, "sidelog.it.orders.>"); },
       "Permissions Violation for Subscription to \"sidelog.it.orders.>\""},
      {"listen to every inbox", [](natsConnection* nc) { Subscribe(nc, "_INBOX.>"); },
       "Permissions Violation for Subscription to \"_INBOX.>\""},
      {"listen to orders' sidecar's inbox",
       [](natsConnection* nc) { Subscribe(nc, SidecarInboxPrefix("it", "orders") + ".>"); },
       "Permissions Violation for Subscription to \"_INBOX.sidelog.it.svc.orders.>\""},
  };
  for (const auto& a : attempts) {
    SCOPED_TRACE(a.what);
    std::string error = ServerError(nats_.url(), billing_creds, inbox, a.act);
    EXPECT_NE(error.find(a.refusal), std::string::npos) << "the server answered: " << error;
  }
  EXPECT_EQ(LastSeq("SIDELOG_it_orders"), orders_before) << "orders' history changed";
  EXPECT_TRUE(admin_->Info("SIDELOG_it_payments").ok()) << "payments is still there";
  // The sidecar refuses the write itself, before NATS would.
  EXPECT_EQ(RawRequest(sidecar.port(), "POST", "/v1/streams/orders/entities/o1/events",
                       R"({"events":[{"type":"OrderCancelled"}]})")
                .status,
            403);
}

TEST_F(NatsIdentities, AWiderIdentityWorksWithoutRestartingNatsAndTheOldOneStaysNarrow) {
  const std::string before =
      WriteCreds("billing", op::SidecarPermissions("it", "billing", {"payments"}, {"orders"}));
  const std::string after = WriteCreds(
      "billing", op::SidecarPermissions("it", "billing", {"payments", "refunds"}, {"orders"}));
  const std::string refunds =
      "streams:\n  - name: refunds\n    access: write\n  - name: payments\n    access: write\n";
  SidecarProcess sidecar(refunds, Section(after), "billing");
  sidecar.Start(std::chrono::seconds(20));
  ASSERT_TRUE(WaitFor([&] {
    return RawRequest(sidecar.port(), "GET", "/v1/status").json()["nats"]["state"] == "connected";
  })) << RawRequest(sidecar.port(), "GET", "/v1/status").body;
  auto r = RawRequest(sidecar.port(), "POST", "/v1/streams/refunds/entities/r1/events",
                      R"({"events":[{"type":"RefundIssued"}]})");
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(LastSeq("SIDELOG_it_refunds"), 1u);
  EXPECT_NE(ServerError(nats_.url(), before, SidecarInboxPrefix("it", "billing"),
                        [](natsConnection* nc) { Publish(nc, "sidelog.it.refunds.r2"); })
                .find("Permissions Violation for Publish"),
            std::string::npos);
  EXPECT_EQ(LastSeq("SIDELOG_it_refunds"), 1u);
}

TEST_F(NatsIdentities, ARevokedIdentityIsDisconnectedWithinSecondsAndRefusedAfter) {
  std::string billing_user;
  const std::string creds = WriteCreds(
      "billing", op::SidecarPermissions("it", "billing", {"payments"}, {"orders"}), &billing_user);
  SidecarProcess sidecar(kBilling, Section(creds), "billing");
  sidecar.Start();
  ASSERT_EQ(RawRequest(sidecar.port(), "POST", "/v1/streams/payments/entities/p1/events",
                       R"({"events":[{"type":"PaymentReceived"}]})")
                .status,
            201);

  // The operator's system user pushes the account with billing's key revoked.
  NatsConfig sys;
  sys.url = nats_.url();
  sys.creds_file = WriteCreds("sys", op::NatsPermissions{}, nullptr, &sys_);
  auto js = JetStream::Connect(sys, nullptr);
  ASSERT_TRUE(js.ok()) << js.status().message();
  const auto revoked_at = std::chrono::steady_clock::now();
  auto reply = (*js)->Request("$SYS.REQ.CLAIMS.UPDATE", AccountJwt({{billing_user, Now()}}), 5000);
  ASSERT_TRUE(reply.ok()) << reply.status().message();
  EXPECT_EQ(Json::parse(*reply, nullptr, false)["data"]["code"], 200) << *reply;

  Json status;
  for (int i = 0; i < 100; ++i) {
    status = RawRequest(sidecar.port(), "GET", "/v1/status").json();
    if (status["nats"]["state"] == "disconnected") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(status["nats"]["state"], "disconnected") << status.dump();
  EXPECT_LT(std::chrono::steady_clock::now() - revoked_at, std::chrono::seconds(5));
  EXPECT_EQ(RawRequest(sidecar.port(), "POST", "/v1/streams/payments/entities/p1/events",
                       R"({"events":[{"type":"PaymentRefunded"}]})")
                .status,
            503);
  // Reconnecting with the revoked credential is refused, and the sidecar says so.
  for (int i = 0; i < 50; ++i) {
    status = RawRequest(sidecar.port(), "GET", "/v1/status").json();
    if (!status["nats"].value("lastError", "").empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(status["nats"]["state"], "disconnected") << status.dump();
  EXPECT_NE(status["nats"].value("lastError", ""), "") << status.dump();
  EXPECT_EQ(LastSeq("SIDELOG_it_payments"), 1u);
}

}  // namespace
}  // namespace sidelog::testing
