// The webhook's certificates, made with OpenSSL's libcrypto: a self-signed certificate
// authority and a serving certificate it signs, as PEM text, and what a certificate says about
// itself (validity, names) so the operator can tell when to renew.
//
// Keys are ECDSA P-256. Pure functions of their inputs and the clock; thread-safe.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "sidelog/status.h"

namespace sidelog::op {

// A certificate and its private key, PEM-encoded ("-----BEGIN CERTIFICATE-----",
// "-----BEGIN PRIVATE KEY-----" in PKCS#8).
struct CertificatePair {
  std::string cert_pem;
  std::string key_pem;
  bool empty() const { return cert_pem.empty(); }
  bool operator==(const CertificatePair& o) const {
    return cert_pem == o.cert_pem && key_pem == o.key_pem;
  }
};

// What a certificate states.
struct CertificateInfo {
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;
  std::string common_name;
  std::vector<std::string> dns_names;     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries, as text
  bool is_ca = false;                     // basicConstraints CA:TRUE
};

// A self-signed CA named `common_name`, valid from now (minus a minute of clock skew) for
// `validity`.
Result<CertificatePair> MakeCertificateAuthority(const std::string& common_name,
                                                 std::chrono::seconds validity);

// A TLS server certificate signed by `ca` for `dns_names` and `ip_addresses` (the first DNS
// name is also the common name), valid from now for `validity`, with extendedKeyUsage
// serverAuth. InvalidArgument when `ca` cannot be read or an address is not an IP.
Result<CertificatePair> MakeServingCertificate(const CertificatePair& ca,
                                               const std::vector<std::string>& dns_names,
                                               const std::vector<std::string>& ip_addresses,
                                               std::chrono::seconds validity);

// The first certificate in `cert_pem`. InvalidArgument when there is none.
Result<CertificateInfo> InspectCertificate(const std::string& cert_pem);

// Ok when `cert_pem` chains to one of the CAs in `ca_bundle_pem` (one or more PEM
// certificates), is valid at `now` and names `host` (a DNS name or an IP address);
// otherwise InvalidArgument saying which of these fails. Checks the private key matches
// when `key_pem` is not empty.
Status VerifyServingCertificate(const std::string& cert_pem, const std::string& key_pem,
                                const std::string& ca_bundle_pem, const std::string& host,
                                std::chrono::system_clock::time_point now);

// True once two thirds of the certificate's validity have passed at `now`.
bool RenewalDue(const CertificateInfo& info, std::chrono::system_clock::time_point now);

// The PEM blocks of a bundle, each with its BEGIN and END lines, in order.
std::vector<std::string> SplitPemBundle(const std::string& pem);

}  // namespace sidelog::op
