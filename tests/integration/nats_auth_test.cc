// The sidecar's NATS transport and authentication against a real nats-server: TLS with a CA and
// a client certificate (verified by the server), user and password, a token, and a creds file
// (decentralized JWT auth: operator, account and user made by nats_jwt.py). A missing or
// wrong credential leaves the sidecar unable to write (503), never writing somewhere else.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>

#include "replication_util.h"

namespace sidelog::testing {
namespace {

// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl in `dir`.
void MakeCertificates(const std::string& dir,
                      const std::string& server_names = "IP:127.0.0.1,DNS:localhost") {
  const std::string script = "cd '" + dir + R"(' && {
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=sidelog-test-ca -keyout ca.key -out ca.crt &&
    openssl req -newkey rsa:2048 -nodes -subj /CN=nats -keyout server.key -out server.csr &&
    printf 'subjectAltName=)" +
                             server_names + R"(\n' > server.ext &&
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile server.ext -out server.crt &&
    openssl req -newkey rsa:2048 -nodes -subj /CN=sidecar -keyout client.key -out client.csr &&
    printf 'extendedKeyUsage=clientAuth\n' > client.ext &&
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile client.ext -out client.crt
  } >/dev/null 2>&1)";
  ASSERT_EQ(std::system(script.c_str()), 0) << "openssl failed";
}

std::string NatsSection(const NatsServer& nats, const std::string& auth) {
  return "nats: {url: \"" + nats.url() + "\", createStreams: true" + auth + "}\n";
}

TEST(NatsAuth, TlsWithAClientCertificateAndAPasswordWorks) {
  NatsServer nats;
  MakeCertificates(nats.dir());
  const std::string d = nats.dir();
  nats.AddConfig("tls { cert_file: \"" + d + "/server.crt\", key_file: \"" + d +
                 "/server.key\", ca_file: \"" + d + "/ca.crt\", verify: true }");
  nats.AddConfig("authorization { user: orders, password: \"s3cret\" }");
  nats.set_scheme("tls");  // URLs name localhost: libnats checks the host name, not IP SANs
  nats.Start();
  const std::string tls = ", tls: {ca: \"" + d + "/ca.crt\", cert: \"" + d +
                          "/client.crt\", key: \"" + d + "/client.key\"}";

  SidecarProcess ok(kOrders, NatsSection(nats, tls + ", user: orders, password: s3cret"), "orders");
  ok.Start();
  auto r = Append(ok, "o1", Events("tls-1", 1));
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(JetStreamLastSeq(nats), -1) << "the test's own client has no certificate";

  SidecarProcess no_cert(
      kOrders,
      NatsSection(nats, ", tls: {ca: \"" + d + "/ca.crt\"}, user: orders, password: s3cret"),
      "orders");
  no_cert.Start(std::chrono::seconds(20));  // ready once the startup catch-up gives up
  EXPECT_EQ(Append(no_cert, "o2", Events("tls-2", 1)).status, 503)
      << "the server requires a client certificate";
  Json refused = RawRequest(no_cert.port(), "GET", "/v1/status").json();
  EXPECT_EQ(refused["nats"]["state"], "disconnected");
  EXPECT_NE(refused["nats"].value("lastError", ""), "") << "the sidecar does not say why";

  // A CA that did not sign the server's certificate: the sidecar does not connect, and says
  // why.
  ASSERT_EQ(std::system(("cd '" + d +
                         "' && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other "
                         "-keyout other.key -out other.crt >/dev/null 2>&1")
                            .c_str()),
            0);
  SidecarProcess wrong_ca(kOrders,
                          NatsSection(nats, ", tls: {ca: \"" + d + "/other.crt\", cert: \"" + d +
                                                "/client.crt\", key: \"" + d +
                                                "/client.key\"}, user: orders, password: s3cret"),
                          "orders");
  wrong_ca.Start(std::chrono::seconds(20));
  EXPECT_EQ(Append(wrong_ca, "o4", Events("tls-4", 1)).status, 503);
  Json why = RawRequest(wrong_ca.port(), "GET", "/v1/status").json();
  EXPECT_EQ(why["nats"]["state"], "disconnected");
  EXPECT_NE(why["nats"].value("lastError", ""), "") << why.dump();

  SidecarProcess wrong_password(kOrders, NatsSection(nats, tls + ", user: orders, password: nope"),
                                "orders");
  wrong_password.Start(std::chrono::seconds(20));
  EXPECT_EQ(Append(wrong_password, "o3", Events("tls-3", 1)).status, 503);
  EXPECT_EQ(RawRequest(wrong_password.port(), "GET", "/v1/status").json()["nats"]["state"],
            "disconnected");

  // The commit of the first sidecar, read back by a second one with good credentials.
  SidecarProcess reader(kOrdersRead, NatsSection(nats, tls + ", user: orders, password: s3cret"),
                        "billing");
  reader.Start();
  auto got = RawRequest(reader.port(), "GET", "/v1/streams/orders/entities/o1?minPosition=1");
  EXPECT_EQ(got.status, 200) << got.body;
}

TEST(NatsAuth, AServerCertificateForAnotherNameIsRefusedAndTheSidecarSaysWhy) {
  NatsServer nats;
  MakeCertificates(nats.dir(), "DNS:nats.elsewhere.test");
  const std::string d = nats.dir();
  nats.AddConfig("tls { cert_file: \"" + d + "/server.crt\", key_file: \"" + d + "/server.key\" }");
  nats.set_scheme("tls");  // tls://localhost: a name the certificate does not hold
  nats.Start();
  SidecarProcess sidecar(kOrders, NatsSection(nats, ", tls: {ca: \"" + d + "/ca.crt\"}"), "orders");
  sidecar.Start(std::chrono::seconds(20));
  EXPECT_EQ(Append(sidecar, "o1", Events("host-1", 1)).status, 503);
  Json why = RawRequest(sidecar.port(), "GET", "/v1/status").json();
  EXPECT_EQ(why["nats"]["state"], "disconnected");
  EXPECT_NE(why["nats"].value("lastError", ""), "") << why.dump();
  EXPECT_EQ(RawRequest(sidecar.port(), "GET", "/readyz").status, 200)
      << "a NATS it cannot reach does not make the sidecar unready";
}

TEST(NatsAuth, ATokenIsSentAndAWrongOneRefused) {
  NatsServer nats;
  nats.AddConfig("authorization { token: \"t0ken\" }");
  nats.Start();
  SidecarProcess ok(kOrders, NatsSection(nats, ", token: t0ken"), "orders");
  ok.Start();
  EXPECT_EQ(Append(ok, "o1", Events("tok-1", 1)).status, 201);
  SidecarProcess bad(kOrders, NatsSection(nats, ", token: wrong"), "orders");
  bad.Start(std::chrono::seconds(20));
  EXPECT_EQ(Append(bad, "o1", Events("tok-2", 2)).status, 503);
}

TEST(NatsAuth, ACredsFileAuthenticatesAndAnUnknownAccountIsRefused) {
  NatsServer nats;
  const std::string d = nats.dir();
  // Debian's python3 (scripts/setup installs python3-cryptography for it).
  const std::string python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  const std::string make =
      python + " " SIDELOG_SOURCE_DIR "/tests/integration/nats_jwt.py '" + d + "' 2>&1";
  ASSERT_EQ(std::system(make.c_str()), 0) << "nats_jwt.py failed";
  nats.AddConfig("include \"auth.conf\"");  // relative to the config file, in dir()
  nats.Start();
  EXPECT_EQ(JetStreamLastSeq(nats), -1) << "operator mode: an anonymous client gets nowhere";

  SidecarProcess ok(kOrders, NatsSection(nats, ", credsFile: \"" + d + "/orders.creds\""),
                    "orders");
  ok.Start();
  auto r = Append(ok, "o1", Events("creds-1", 1));
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(RawRequest(ok.port(), "GET", "/v1/status").json()["nats"]["state"], "connected");

  // A user whose account the server does not know: refused, so the sidecar cannot write.
  SidecarProcess stranger(kOrders, NatsSection(nats, ", credsFile: \"" + d + "/stranger.creds\""),
                          "orders");
  stranger.Start(std::chrono::seconds(20));
  EXPECT_EQ(Append(stranger, "o2", Events("creds-2", 1)).status, 503);
  EXPECT_EQ(RawRequest(stranger.port(), "GET", "/v1/status").json()["nats"]["state"],
            "disconnected");

  // The commit is readable through another sidecar of the same account.
  SidecarProcess reader(kOrdersRead, NatsSection(nats, ", credsFile: \"" + d + "/orders.creds\""),
                        "billing");
  reader.Start();
  auto got = RawRequest(reader.port(), "GET", "/v1/streams/orders/entities/o1?minPosition=1");
  EXPECT_EQ(got.status, 200) << got.body;
}

}  // namespace
}  // namespace sidelog::testing
