// The admission webhook's HTTPS server, called over real TLS with curl as the API server would:
// AdmissionReview in and out, the certificate swapped without a restart, bad requests.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "admission_server.h"
#include "operator_test_util.h"
#include "sidecar_process.h"
#include "sidelog/base64.h"

namespace sidelog::op {
namespace {

using std::chrono::hours;

struct Reply {
  int exit = -1;
  std::string body;
};

class AdmissionServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("sidelog-admission-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    port_ = sidelog::testing::FreePort();
    server_ = std::make_unique<AdmissionServer>(
        "127.0.0.1:" + std::to_string(port_),
        [this](const Json& request) { return handler_(request); }, &metrics_);
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A CA and a certificate of it for 127.0.0.1; the CA's PEM is written to `ca_file`.
  CertificatePair Issue(const std::string& ca_file) {
    auto ca = MakeCertificateAuthority("test-ca", hours(1));
    EXPECT_TRUE(ca.ok());
    std::ofstream(dir_ / ca_file) << ca->cert_pem;
    auto serving = MakeServingCertificate(*ca, {"sidelog-webhook"}, {"127.0.0.1"}, hours(1));
    EXPECT_TRUE(serving.ok());
    return *serving;
  }

  // POSTs `body` to `path` trusting only `ca_file`.
  Reply Post(const std::string& ca_file, const std::string& body,
             const std::string& path = "/mutate") {
    std::ofstream(dir_ / "body.json") << body;
    std::string cmd =
        "curl -sS --max-time 5 --cacert " + (dir_ / ca_file).string() +
        " -H 'Content-Type: application/json' --data-binary @" + (dir_ / "body.json").string() +
        " -w '\\n%{http_code}' https://127.0.0.1:" + std::to_string(port_) + path + " 2>&1";
    Reply r;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.body.append(buf, n);
    int status = pclose(p);
    r.exit = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
  }

  static std::string Review(const std::string& uid) {
    return Json{{"apiVersion", "admission.k8s.io/v1"},
                {"kind", "AdmissionReview"},
                {"request",
                 {{"uid", uid},
                  {"kind", {{"group", ""}, {"version", "v1"}, {"kind", "Pod"}}},
                  {"operation", "CREATE"},
                  {"namespace", "shop"},
                  {"object", {{"metadata", {{"name", "p"}}}}}}}}
        .dump();
  }

  // The JSON of a reply whose last line is the HTTP status `code`.
  static Json BodyOf(const Reply& r, int code) {
    auto nl = r.body.rfind('\n');
    EXPECT_NE(nl, std::string::npos) << r.body;
    EXPECT_EQ(r.body.substr(nl + 1), std::to_string(code)) << r.body;
    return Json::parse(r.body.substr(0, nl), nullptr, false);
  }

  double Counted(const std::string& result) {
    std::string text = metrics_.Render();
    std::string series = "sidelog_operator_admissions_total{result=\"" + result + "\"} ";
    auto at = text.find(series);
    return at == std::string::npos ? 0 : std::stod(text.substr(at + series.size()));
  }

  std::filesystem::path dir_;
  int port_ = 0;
  Metrics metrics_;
  AdmissionServer::Handler handler_ = [](const Json&) { return AdmissionDecision{}; };
  std::unique_ptr<AdmissionServer> server_;
};

TEST_F(AdmissionServerTest, NoHandshakeSucceedsBeforeACertificateIsSet) {
  Issue("ca.pem");
  EXPECT_FALSE(server_->Serving());
  EXPECT_NE(Post("ca.pem", Review("u1")).exit, 0);
}

TEST_F(AdmissionServerTest, APatchIsAnsweredAsBase64JsonPatchWithTheRequestsUid) {
  ASSERT_TRUE(server_->SetCertificate(Issue("ca.pem")).ok());
  EXPECT_TRUE(server_->Serving());
  Json seen;
  handler_ = [&seen](const Json& request) {
    seen = request;
    AdmissionDecision d;
    d.patch.push_back({{"op", "add"}, {"path", "/metadata/labels"}, {"value", {{"a", "b"}}}});
    d.warnings.emplace_back("heads up");
    return d;
  };
  Reply r = Post("ca.pem", Review("uid-1"));
  ASSERT_EQ(r.exit, 0) << r.body;
  Json review = BodyOf(r, 200);
  EXPECT_EQ(seen.value("namespace", ""), "shop");
  EXPECT_EQ(review["apiVersion"], "admission.k8s.io/v1");
  EXPECT_EQ(review["kind"], "AdmissionReview");
  const Json& response = review["response"];
  EXPECT_EQ(response["uid"], "uid-1");
  EXPECT_EQ(response["allowed"], true);
  EXPECT_EQ(response["patchType"], "JSONPatch");
  auto patch = Base64Decode(response["patch"].get<std::string>());
  ASSERT_TRUE(patch.ok());
  EXPECT_EQ(Json::parse(*patch)[0]["path"], "/metadata/labels");
  EXPECT_EQ(response["warnings"][0], "heads up");
  EXPECT_EQ(Counted("patched"), 1);
}

TEST_F(AdmissionServerTest, ADenialCarriesItsCodeAndMessageAndNoPatch) {
  ASSERT_TRUE(server_->SetCertificate(Issue("ca.pem")).ok());
  handler_ = [](const Json&) {
    AdmissionDecision d;
    d.allowed = false;
    d.message = "no EventService selects pod shop/p";
    return d;
  };
  Json response = BodyOf(Post("ca.pem", Review("u2")), 200)["response"];
  EXPECT_EQ(response["allowed"], false);
  EXPECT_FALSE(response.contains("patch"));
  EXPECT_EQ(response["status"]["code"], 403);
  EXPECT_EQ(response["status"]["message"], "no EventService selects pod shop/p");
  EXPECT_EQ(Counted("denied"), 1);
}

TEST_F(AdmissionServerTest, AHandlerThatThrowsDeniesThePodInsteadOfAdmittingIt) {
  ASSERT_TRUE(server_->SetCertificate(Issue("ca.pem")).ok());
  handler_ = [](const Json&) -> AdmissionDecision { throw std::runtime_error("boom"); };
  Json response = BodyOf(Post("ca.pem", Review("u3")), 200)["response"];
  EXPECT_EQ(response["allowed"], false);
  EXPECT_EQ(response["status"]["code"], 500);
  EXPECT_NE(response["status"]["message"].get<std::string>().find("boom"), std::string::npos);
  EXPECT_EQ(Counted("error"), 1);
}

TEST_F(AdmissionServerTest, WhatIsNotAnAdmissionReviewIsAProblem) {
  ASSERT_TRUE(server_->SetCertificate(Issue("ca.pem")).ok());
  for (const std::string body :
       {"not json", "{\"kind\":\"Pod\"}", "{\"kind\":\"AdmissionReview\",\"request\":{}}"}) {
    Json problem = BodyOf(Post("ca.pem", body), 400);
    EXPECT_EQ(problem.value("status", 0), 400) << body;
    EXPECT_NE(problem.value("detail", "").find("AdmissionReview"), std::string::npos) << body;
  }
  Json other = BodyOf(Post("ca.pem", Review("u4"), "/validate"), 404);
  EXPECT_NE(other.value("detail", "").find("/mutate"), std::string::npos);
}

TEST_F(AdmissionServerTest, ANewCertificateIsServedFromTheNextHandshakeWithoutARestart) {
  ASSERT_TRUE(server_->SetCertificate(Issue("old.pem")).ok());
  ASSERT_EQ(Post("old.pem", Review("a")).exit, 0);
  CertificatePair renewed = Issue("new.pem");
  ASSERT_TRUE(server_->SetCertificate(renewed).ok());
  EXPECT_EQ(server_->Certificate(), renewed);
  Reply with_new = Post("new.pem", Review("b"));
  EXPECT_EQ(with_new.exit, 0) << with_new.body;
  EXPECT_NE(Post("old.pem", Review("c")).exit, 0);  // a client of the old CA only: refused
}

TEST_F(AdmissionServerTest, AMismatchedPairIsRefusedAndTheCurrentOneKept) {
  CertificatePair good = Issue("ca.pem");
  ASSERT_TRUE(server_->SetCertificate(good).ok());
  CertificatePair other = Issue("other.pem");
  auto s = server_->SetCertificate({good.cert_pem, other.key_pem});
  EXPECT_EQ(s.code(), Status::Code::kInvalid);
  EXPECT_NE(s.message().find("does not match"), std::string::npos);
  EXPECT_EQ(server_->Certificate(), good);
  EXPECT_EQ(Post("ca.pem", Review("d")).exit, 0);
}

}  // namespace
}  // namespace sidelog::op
