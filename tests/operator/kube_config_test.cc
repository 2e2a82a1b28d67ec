#include "kube_config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace sidelog::op {
namespace {

class KubeConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sidelog-kubeconfig.XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::string p = dir_ + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
  std::string dir_;
};

TEST_F(KubeConfigTest, ReadsTheCurrentContextWithInlineDataAndRelativeFiles) {
  Write("ca.crt", "CA PEM");
  // "Q0VSVA==" is base64 of "CERT", "S0VZ" of "KEY".
  auto path = Write("config", R"(
apiVersion: v1
kind: Config
current-context: b
clusters:
  - name: one
    cluster: {server: "https://10.0.0.1:6443/"}
  - name: two
    cluster: {server: "https://127.0.0.1:7443", certificate-authority: ca.crt}
users:
  - name: cert-user
    user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
contexts:
  - name: a
    context: {cluster: one, user: cert-user}
  - name: b
    context: {cluster: two, user: cert-user, namespace: shop}
)");
  auto c = LoadKubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->server, "https://127.0.0.1:7443");
  EXPECT_EQ(c->ca_pem, "CA PEM");
  EXPECT_EQ(c->client_cert_pem, "CERT");
  EXPECT_EQ(c->client_key_pem, "KEY");
  EXPECT_EQ(c->default_namespace, "shop");

  auto a = LoadKubeconfig(path, "a");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->server, "https://10.0.0.1:6443") << "a trailing slash is dropped";
  EXPECT_EQ(a->default_namespace, "default");
}

TEST_F(KubeConfigTest, ATokenUserNeedsNoCertificate) {
  auto path = Write("config", R"(
current-context: x
clusters: [{name: c, cluster: {server: "https://h:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
)");
  auto c = LoadKubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->token, "abc");
  EXPECT_TRUE(c->insecure);
}

TEST_F(KubeConfigTest, ErrorsNameTheFileAndWhatIsWrong) {
  auto missing_ctx = LoadKubeconfig(Write("a", "current-context: nope\ncontexts: []\n"));
  ASSERT_FALSE(missing_ctx.ok());
  EXPECT_NE(missing_ctx.status().message().find("no context named nope"), std::string::npos);
  EXPECT_NE(missing_ctx.status().message().find(dir_ + "/a"), std::string::npos);

  auto exec = LoadKubeconfig(Write("b", R"(
current-context: x
clusters: [{name: c, cluster: {server: "https://h:1"}}]
users: [{name: u, user: {exec: {command: aws}}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
)"));
  ASSERT_FALSE(exec.ok());
  EXPECT_NE(exec.status().message().find("exec"), std::string::npos);

  auto half = LoadKubeconfig(Write("c", R"(
current-context: x
clusters: [{name: c, cluster: {server: "https://h:1"}}]
users: [{name: u, user: {client-certificate-data: Q0VSVA==}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
)"));
  ASSERT_FALSE(half.ok());
  EXPECT_NE(half.status().message().find("client key"), std::string::npos);

  EXPECT_FALSE(LoadKubeconfig(dir_ + "/does-not-exist").ok());
}

TEST_F(KubeConfigTest, InClusterIsNotFoundOutsideAPod) {
  unsetenv("KUBERNETES_SERVICE_HOST");
  auto c = InClusterConfig();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Status::Code::kNotFound);
}

}  // namespace
}  // namespace sidelog::op
