// Per-service NATS identities issued by the operator (NatsIdentities, the EventService
// reconciler) against FakeKubeApi and a real nats-server that includes the authority's
// auth.conf: each service's Secret holds credentials the server accepts and limits to its
// streams; a narrower spec revokes the old credential, a wider one keeps it; a deleted service
// is revoked; a restarted operator keeps the same authority.
#include <gtest/gtest.h>

#include <fstream>

#include "eventservice_reconciler.h"
#include "eventstream_reconciler.h"
#include "fake_kube_api.h"
#include "manager.h"
#include "nats_identities.h"
#include "nats_server.h"
#include "operator_test_util.h"
#include "shop_objects.h"
#include "sidelog/names.h"
#include "sidelog/yaml.h"
#include "webhook_certificates.h"

namespace sidelog::op {
namespace {

using testing::At;
using testing::Object;
using testing::ShopObjects;
using testing::WaitFor;

class NatsIdentitiesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ids =
        NatsIdentities::Open(&api_, {"sidelog-system", "sidelog-nats-auth", nats_.dir() + "/jwt"});
    ASSERT_TRUE(ids.ok()) << ids.status().message();
    ids_ = std::move(ids).value();
    std::ofstream(nats_.dir() + "/auth.conf") << ids_->AuthConf();
    nats_.AddConfig("include \"auth.conf\"");
    nats_.Start();

    system_ = Connect(ids_->SystemCreds(), "");
    ASSERT_TRUE(system_);
    ids_->SetSystemConnection(system_.get());
    admin_ = Connect(ids_->OperatorCreds(), "");
    ASSERT_TRUE(admin_);
    for (const char* s : {"orders", "customers", "payments", "refunds"}) {
      ASSERT_TRUE(admin_->CreateStream(JetStreamName("shop", s), StreamSubjects("shop", s)).ok());
    }
  }
  void TearDown() override {
    if (manager_) manager_->Stop();
  }

  // A connection with the credentials `creds` (file text), as `inbox`'s owner would make it.
  std::unique_ptr<JetStream> Connect(const std::string& creds, const std::string& inbox) {
    const std::string path = nats_.dir() + "/creds-" + std::to_string(++files_);
    std::ofstream(path) << creds;
    NatsConfig c;
    c.url = nats_.url();
    c.creds_file = path;
    c.inbox_prefix = inbox;
    auto js = JetStream::Connect(c, nullptr);
    if (!js.ok()) return nullptr;
    WaitFor([&] { return (*js)->connected() || !(*js)->last_error().empty(); },
            std::chrono::seconds(5));
    return std::move(js).value();
  }

  void Start() {
    manager_ = std::make_unique<Manager>(&api_, "", &metrics_);
    recorder_ = std::make_unique<EventRecorder>(manager_->client(), "sidelog-operator", "test");
    EventServiceOptions o;
    o.sidecar.nats.url = "nats://nats.sidelog-system:4222";
    o.sidecar.nats.creds_file = "/etc/sidelog/nats/identity/nats.creds";
    o.identities = ids_.get();
    reconciler_ = std::make_unique<EventServiceReconciler>(
        manager_->client(), manager_->InformerFor(kEventServices),
        manager_->InformerFor(kEventStreams), manager_->InformerFor(kConfigMaps), nullptr,
        recorder_.get(), o);
    ControllerOptions c;
    c.resync_period = std::chrono::hours(1);
    reconciler_->WatchDependencies(manager_->AddController(kEventServices, reconciler_.get(), c));
    manager_->Start();
    ASSERT_TRUE(manager_->WaitUntilReady(std::chrono::seconds(5)));
    for (const auto& s : ShopObjects("EventStream"))
      ASSERT_TRUE(api_.Create(kEventStreams, "shop", s).ok());
    for (const auto& s : ShopObjects("EventService"))
      ASSERT_TRUE(api_.Create(kEventServices, "shop", s).ok());
  }

  // The credentials in sidelog-nats-<service>, once its user is not `not_user`.
  std::string Creds(const std::string& service, const std::string& not_user = "") {
    std::string creds;
    WaitFor([&] {
      auto s = api_.Get(kSecrets, "shop", "sidelog-nats-" + service);
      if (!s.ok()) return false;
      if (At(*s, "/metadata/annotations/" + EscapePointerToken(kNatsUserAnnotation)) == not_user)
        return false;
      creds = SecretValue(&*s, kNatsCredsKey);
      return !creds.empty();
    });
    return creds;
  }

  static Result<PubAck> Publish(JetStream* js, const std::string& stream, const std::string& id) {
    return js->Publish(EntitySubject("shop", stream, "e-" + id), id, 0, "application/json", "[]",
                       1000);
  }

  bool Revoked(JetStream* js) {
    return WaitFor([&] { return !js->connected(); }, std::chrono::seconds(5));
  }

  sidelog::testing::NatsServer nats_;
  FakeKubeApi api_;
  Metrics metrics_;
  std::unique_ptr<NatsIdentities> ids_;
  std::unique_ptr<JetStream> system_, admin_;
  std::unique_ptr<Manager> manager_;
  std::unique_ptr<EventRecorder> recorder_;
  std::unique_ptr<EventServiceReconciler> reconciler_;
  int files_ = 0;
};

TEST_F(NatsIdentitiesTest, EachServiceGetsItsOwnCredentialsLimitedToItsStreams) {
  Start();
  auto billing = Connect(Creds("billing"), SidecarInboxPrefix("shop", "billing"));
  ASSERT_TRUE(billing && billing->connected()) << (billing ? billing->last_error() : "");
  auto paid = Publish(billing.get(), "payments", "p1");
  EXPECT_TRUE(paid.ok()) << paid.status().message();
  EXPECT_TRUE(billing->Info("SIDELOG_shop_orders").ok()) << "billing consumes orders";
  EXPECT_FALSE(Publish(billing.get(), "orders", "o1").ok());
  EXPECT_NE(
      billing->last_error().find("Permissions Violation for Publish to \"sidelog.shop.orders"),
      std::string::npos)
      << billing->last_error();
  EXPECT_FALSE(billing->DeleteStream("SIDELOG_shop_orders").ok());
  EXPECT_TRUE(admin_->Info("SIDELOG_shop_orders").ok()) << "orders is still there";
  EXPECT_EQ(admin_->Info("SIDELOG_shop_orders")->last_seq, 0u);

  auto orders = Connect(Creds("orders"), SidecarInboxPrefix("shop", "orders"));
  ASSERT_TRUE(orders && orders->connected());
  EXPECT_TRUE(Publish(orders.get(), "orders", "o2").ok());
  EXPECT_TRUE(Publish(orders.get(), "customers", "c1").ok());
  EXPECT_FALSE(Publish(orders.get(), "payments", "p2").ok());

  // The rendered config names the file the webhook mounts from the Secret.
  auto cm = api_.Get(kConfigMaps, "shop", "sidelog-billing");
  ASSERT_TRUE(cm.ok());
  EXPECT_NE(cm->dump().find("/etc/sidelog/nats/identity/nats.creds"), std::string::npos);
  auto secret = api_.Get(kSecrets, "shop", "sidelog-nats-billing");
  ASSERT_TRUE(secret.ok());
  EXPECT_EQ(At(*secret, "/metadata/ownerReferences/0/kind"), "EventService");
  EXPECT_EQ(At(*secret, "/metadata/ownerReferences/0/name"), "billing");
}

TEST_F(NatsIdentitiesTest, AWiderSpecKeepsTheOldCredentialANarrowerOneRevokesIt) {
  Start();
  const std::string first = Creds("billing");
  auto old = Connect(first, SidecarInboxPrefix("shop", "billing"));
  ASSERT_TRUE(old && old->connected());
  const std::string first_user =
      At(*api_.Get(kSecrets, "shop", "sidelog-nats-billing"),
         "/metadata/annotations/" + EscapePointerToken(kNatsUserAnnotation));

  // Wider: billing also produces refunds. The new credential may; the old one keeps working.
  ASSERT_TRUE(
      api_.Create(kEventStreams, "shop", Object("EventStream", "shop", "refunds", Json::object()))
          .ok());
  auto svc = *api_.Get(kEventServices, "shop", "billing");
  svc["spec"]["produces"] = {"payments", "refunds"};
  ASSERT_TRUE(api_.Update(kEventServices, svc).ok());
  const std::string wider = Creds("billing", first_user);
  auto refunds = Connect(wider, SidecarInboxPrefix("shop", "billing"));
  ASSERT_TRUE(refunds && refunds->connected()) << (refunds ? refunds->last_error() : "");
  EXPECT_TRUE(Publish(refunds.get(), "refunds", "r1").ok());
  EXPECT_TRUE(Publish(old.get(), "payments", "p1").ok()) << "the old credential was revoked";
  EXPECT_TRUE(old->connected());

  // Narrower: billing stops consuming orders. Every credential that could read it is revoked.
  const std::string wider_user =
      At(*api_.Get(kSecrets, "shop", "sidelog-nats-billing"),
         "/metadata/annotations/" + EscapePointerToken(kNatsUserAnnotation));
  svc = *api_.Get(kEventServices, "shop", "billing");
  svc["spec"].erase("consumes");
  ASSERT_TRUE(api_.Update(kEventServices, svc).ok());
  const std::string narrow = Creds("billing", wider_user);
  EXPECT_TRUE(Revoked(old.get())) << "the first credential still works";
  EXPECT_TRUE(Revoked(refunds.get())) << "the wider credential still works";
  auto now = Connect(narrow, SidecarInboxPrefix("shop", "billing"));
  ASSERT_TRUE(now && now->connected()) << (now ? now->last_error() : "");
  EXPECT_TRUE(Publish(now.get(), "refunds", "r2").ok());
  EXPECT_FALSE(now->Info("SIDELOG_shop_orders").ok()) << "billing no longer reads orders";
  auto again = Connect(first, SidecarInboxPrefix("shop", "billing"));
  EXPECT_FALSE(again && again->connected()) << "a revoked credential connects again";

  // Deleted: its last credential is revoked within seconds.
  ASSERT_TRUE(api_.Delete(kEventServices, "shop", "billing").ok());
  EXPECT_TRUE(Revoked(now.get())) << "the deleted service's credential still works";
  EXPECT_NE(now->last_error(), "");
}

TEST_F(NatsIdentitiesTest, ARestartedOperatorKeepsTheAuthorityAndItsRevocations) {
  Start();
  const std::string creds = Creds("billing");
  auto billing = Connect(creds, SidecarInboxPrefix("shop", "billing"));
  ASSERT_TRUE(billing && billing->connected());
  ASSERT_TRUE(api_.Delete(kEventServices, "shop", "billing").ok());
  ASSERT_TRUE(Revoked(billing.get()));
  manager_->Stop();
  manager_.reset();

  auto reopened =
      NatsIdentities::Open(&api_, {"sidelog-system", "sidelog-nats-auth", nats_.dir() + "/jwt"});
  ASSERT_TRUE(reopened.ok()) << reopened.status().message();
  EXPECT_EQ((*reopened)->AuthConf(), ids_->AuthConf()) << "a new authority was made";
  // A server started from the saved auth.conf alone refuses the revoked credential too.
  sidelog::testing::NatsServer fresh;
  std::string conf = (*reopened)->AuthConf();
  const std::string dir = nats_.dir() + "/jwt";
  conf.replace(conf.find(dir), dir.size(), fresh.dir() + "/jwt");
  std::ofstream(fresh.dir() + "/auth.conf") << conf;
  fresh.AddConfig("include \"auth.conf\"");
  fresh.Start();
  const std::string path = fresh.dir() + "/billing.creds";
  std::ofstream(path) << creds;
  NatsConfig c;
  c.url = fresh.url();
  c.creds_file = path;
  auto js = JetStream::Connect(c, nullptr);
  ASSERT_TRUE(js.ok());
  EXPECT_FALSE(WaitFor([&] { return (*js)->connected(); }, std::chrono::seconds(2)));
}

}  // namespace
}  // namespace sidelog::op
