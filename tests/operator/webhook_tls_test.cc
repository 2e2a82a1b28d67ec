// The webhook's certificates: a CA, a serving certificate it signs, what they state, and the
// checks the operator renews by.
#include <gtest/gtest.h>

#include "webhook_tls.h"

namespace sidelog::op {
namespace {

using std::chrono::hours;
using std::chrono::seconds;
using Clock = std::chrono::system_clock;

const std::vector<std::string> kNames = {"sidelog-webhook", "sidelog-webhook.sidelog-system.svc"};

TEST(WebhookTls, ACertificateAuthorityIsACaOfTheGivenValidity) {
  auto ca = MakeCertificateAuthority("sidelog-webhook-ca", hours(24));
  ASSERT_TRUE(ca.ok()) << ca.status().message();
  EXPECT_NE(ca->cert_pem.find("-----BEGIN CERTIFICATE-----"), std::string::npos);
  EXPECT_NE(ca->key_pem.find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  auto info = InspectCertificate(ca->cert_pem);
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->is_ca);
  EXPECT_EQ(info->common_name, "sidelog-webhook-ca");
  auto now = Clock::now();
  EXPECT_LE(info->not_before, now);
  EXPECT_NEAR(std::chrono::duration<double>(info->not_after - now).count(), 24 * 3600, 5);
}

TEST(WebhookTls, AServingCertificateVerifiesForEachOfItsNamesAndAddresses) {
  auto ca = MakeCertificateAuthority("ca", hours(24));
  ASSERT_TRUE(ca.ok());
  auto serving = MakeServingCertificate(*ca, kNames, {"127.0.0.1"}, hours(24));
  ASSERT_TRUE(serving.ok()) << serving.status().message();
  auto info = InspectCertificate(serving->cert_pem);
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->is_ca);
  EXPECT_EQ(info->common_name, "sidelog-webhook");
  EXPECT_EQ(info->dns_names, kNames);
  EXPECT_EQ(info->ip_addresses, std::vector<std::string>{"127.0.0.1"});
  auto now = Clock::now();
  for (const std::string host :
       {"sidelog-webhook", "sidelog-webhook.sidelog-system.svc", "127.0.0.1"}) {
    auto s = VerifyServingCertificate(serving->cert_pem, serving->key_pem, ca->cert_pem, host, now);
    EXPECT_TRUE(s.ok()) << host << ": " << s.message();
  }
  auto other = VerifyServingCertificate(serving->cert_pem, "", ca->cert_pem, "evil.example", now);
  EXPECT_FALSE(other.ok());
  EXPECT_NE(other.message().find("evil.example"), std::string::npos) << other.message();
  EXPECT_FALSE(
      VerifyServingCertificate(serving->cert_pem, "", ca->cert_pem, "127.0.0.2", now).ok());
}

TEST(WebhookTls, VerificationFailsForAnotherCaAWrongKeyOrOutsideTheValidity) {
  auto ca = MakeCertificateAuthority("ca", hours(24));
  auto other_ca = MakeCertificateAuthority("other", hours(24));
  ASSERT_TRUE(ca.ok() && other_ca.ok());
  auto serving = MakeServingCertificate(*ca, kNames, {}, hours(1));
  ASSERT_TRUE(serving.ok());
  auto now = Clock::now();
  const std::string host = kNames[0];
  EXPECT_FALSE(VerifyServingCertificate(serving->cert_pem, "", other_ca->cert_pem, host, now).ok());
  auto wrong_key =
      VerifyServingCertificate(serving->cert_pem, ca->key_pem, ca->cert_pem, host, now);
  EXPECT_FALSE(wrong_key.ok());
  EXPECT_NE(wrong_key.message().find("does not match"), std::string::npos);
  EXPECT_FALSE(
      VerifyServingCertificate(serving->cert_pem, "", ca->cert_pem, host, now + hours(2)).ok());
  EXPECT_FALSE(VerifyServingCertificate(serving->cert_pem, "", "", host, now).ok());
}

TEST(WebhookTls, ABundleOfTwoCasVerifiesCertificatesOfEither) {
  auto old_ca = MakeCertificateAuthority("old", hours(24));
  auto new_ca = MakeCertificateAuthority("new", hours(24));
  ASSERT_TRUE(old_ca.ok() && new_ca.ok());
  const std::string bundle = new_ca->cert_pem + old_ca->cert_pem;
  auto blocks = SplitPemBundle(bundle);
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[0], new_ca->cert_pem);
  EXPECT_EQ(blocks[1], old_ca->cert_pem);
  for (const auto* ca : {&*old_ca, &*new_ca}) {
    auto serving = MakeServingCertificate(*ca, kNames, {}, hours(1));
    ASSERT_TRUE(serving.ok());
    EXPECT_TRUE(
        VerifyServingCertificate(serving->cert_pem, "", bundle, kNames[0], Clock::now()).ok());
  }
}

TEST(WebhookTls, RenewalIsDueAfterTwoThirdsEvenForShortValidities) {
  for (seconds validity : {seconds(30), seconds(hours(8760))}) {
    auto ca = MakeCertificateAuthority("ca", validity);
    ASSERT_TRUE(ca.ok());
    auto info = InspectCertificate(ca->cert_pem);
    ASSERT_TRUE(info.ok());
    auto now = Clock::now();
    EXPECT_FALSE(RenewalDue(*info, now)) << validity.count();
    EXPECT_FALSE(RenewalDue(*info, now + validity / 2)) << validity.count();
    EXPECT_TRUE(RenewalDue(*info, now + validity * 3 / 4)) << validity.count();
  }
}

TEST(WebhookTls, BadInputIsInvalidWithAReason) {
  auto garbage = InspectCertificate("not a certificate");
  EXPECT_EQ(garbage.status().code(), Status::Code::kInvalid);
  auto ca = MakeCertificateAuthority("ca", hours(1));
  ASSERT_TRUE(ca.ok());
  auto bad_ip = MakeServingCertificate(*ca, kNames, {"localhost"}, hours(1));
  EXPECT_EQ(bad_ip.status().code(), Status::Code::kInvalid);
  EXPECT_NE(bad_ip.status().message().find("localhost"), std::string::npos);
  auto bad_ca = MakeServingCertificate({ca->cert_pem, "junk"}, kNames, {}, hours(1));
  EXPECT_EQ(bad_ca.status().code(), Status::Code::kInvalid);
  EXPECT_EQ(MakeServingCertificate(*ca, {}, {}, hours(1)).status().code(), Status::Code::kInvalid);
  EXPECT_TRUE(SplitPemBundle("").empty());
}

}  // namespace
}  // namespace sidelog::op
