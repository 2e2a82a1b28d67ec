#include "webhook_tls.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <memory>

namespace sidelog::op {

namespace {

using Clock = std::chrono::system_clock;

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using Key = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using Store = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using StoreCtx = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;
using Names = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES, GENERAL_NAMES_free>>;

// OpenSSL's last error as text, for a message.
std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

Status Fail(const std::string& what) { return Status::Internal(what + ": " + OpenSslError()); }

// Backdating absorbs clock skew between the operator and the API server; a tenth of a short
// validity, so a 30 s test certificate is not due for renewal as soon as it is made.
std::chrono::seconds Backdate(std::chrono::seconds validity) {
  return std::min(std::chrono::seconds(60), validity / 10);
}

Result<Key> NewKey() {
  Key key(EVP_EC_gen("P-256"));
  if (!key) return Fail("cannot generate an EC key");
  return key;
}

// The PEM text `write` puts into a memory BIO; `what` names it in the error.
template <typename Write>
Result<std::string> Pem(Write write, const char* what) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!write(bio.get())) return Fail(std::string("cannot write ") + what);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, n);
}

Result<std::string> KeyPem(EVP_PKEY* key) {
  return Pem(
      [key](BIO* b) {
        return PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
      },
      "a private key");
}

Result<std::string> CertPem(X509* cert) {
  return Pem([cert](BIO* b) { return PEM_write_bio_X509(b, cert) == 1; }, "a certificate");
}

Result<Cert> ReadCert(const std::string& pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    ERR_clear_error();
    return Status::Invalid("no PEM certificate could be read");
  }
  return cert;
}

Result<Key> ReadKey(const std::string& pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Key key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    ERR_clear_error();
    return Status::Invalid("no PEM private key could be read");
  }
  return key;
}

bool AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A certificate for `key` named `common_name`, valid from now for `validity`, with a random
// serial; the caller adds extensions and signs it.
Result<Cert> NewCert(EVP_PKEY* key, const std::string& common_name, std::chrono::seconds validity) {
  Cert cert(X509_new());
  if (!cert) return Fail("cannot allocate a certificate");
  X509_set_version(cert.get(), 2);  // v3
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return Fail("no random serial");
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  ASN1_INTEGER* asn1 = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  if (!asn1) return Fail("cannot set a serial");
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -Backdate(validity).count());
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), validity.count());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_pubkey(cert.get(), key);
  return cert;
}

Clock::time_point TimeOf(const ASN1_TIME* t) {
  struct tm tm {};
  ASN1_TIME_to_tm(t, &tm);
  return Clock::from_time_t(timegm(&tm));
}

Result<CertificatePair> Pair(X509* cert, EVP_PKEY* key) {
  auto cert_pem = CertPem(cert);
  if (!cert_pem.ok()) return cert_pem.status();
  auto key_pem = KeyPem(key);
  if (!key_pem.ok()) return key_pem.status();
  return CertificatePair{*cert_pem, *key_pem};
}

bool IsIp(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

}  // namespace

Result<CertificatePair> MakeCertificateAuthority(const std::string& common_name,
                                                 std::chrono::seconds validity) {
  auto key = NewKey();
  if (!key.ok()) return key.status();
  auto cert = NewCert(key->get(), common_name, validity);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  X509_set_issuer_name(c, X509_get_subject_name(c));
  if (!AddExtension(c, c, NID_basic_constraints, "critical,CA:TRUE") ||
      !AddExtension(c, c, NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !AddExtension(c, c, NID_subject_key_identifier, "hash")) {
    return Fail("cannot add the CA's extensions");
  }
  if (!X509_sign(c, key->get(), EVP_sha256())) return Fail("cannot sign the CA");
  return Pair(c, key->get());
}

Result<CertificatePair> MakeServingCertificate(const CertificatePair& ca,
                                               const std::vector<std::string>& dns_names,
                                               const std::vector<std::string>& ip_addresses,
                                               std::chrono::seconds validity) {
  if (dns_names.empty() && ip_addresses.empty()) {
    return Status::Invalid("a serving certificate needs at least one name or address");
  }
  auto ca_cert = ReadCert(ca.cert_pem);
  if (!ca_cert.ok()) return Status::Invalid("the CA: " + ca_cert.status().message());
  auto ca_key = ReadKey(ca.key_pem);
  if (!ca_key.ok()) return Status::Invalid("the CA: " + ca_key.status().message());
  std::string san;
  for (const auto& d : dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + d;
  for (const auto& ip : ip_addresses) {
    if (!IsIp(ip)) return Status::Invalid("'" + ip + "' is not an IP address");
    san += (san.empty() ? "IP:" : ",IP:") + ip;
  }
  auto key = NewKey();
  if (!key.ok()) return key.status();
  auto cert = NewCert(key->get(), dns_names.empty() ? ip_addresses[0] : dns_names[0], validity);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  X509_set_issuer_name(c, X509_get_subject_name(ca_cert->get()));
  if (!AddExtension(c, ca_cert->get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !AddExtension(c, ca_cert->get(), NID_key_usage, "critical,digitalSignature") ||
      !AddExtension(c, ca_cert->get(), NID_ext_key_usage, "serverAuth") ||
      !AddExtension(c, ca_cert->get(), NID_authority_key_identifier, "keyid") ||
      !AddExtension(c, ca_cert->get(), NID_subject_alt_name, san.c_str())) {
    return Fail("cannot add the serving certificate's extensions");
  }
  if (!X509_sign(c, ca_key->get(), EVP_sha256())) return Fail("cannot sign the certificate");
  return Pair(c, key->get());
}

Result<CertificateInfo> InspectCertificate(const std::string& cert_pem) {
  auto cert = ReadCert(cert_pem);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  CertificateInfo info;
  info.not_before = TimeOf(X509_get0_notBefore(c));
  info.not_after = TimeOf(X509_get0_notAfter(c));
  char cn[256] = {0};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, cn, sizeof cn) > 0) {
    info.common_name = cn;
  }
  Names names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(c, NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names.get(), i);
    if (n->type == GEN_DNS) {
      const ASN1_IA5STRING* s = n->d.dNSName;
      info.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                  ASN1_STRING_length(s));
    } else if (n->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = n->d.iPAddress;
      char text[INET6_ADDRSTRLEN];
      int family = ip->length == 4 ? AF_INET : ip->length == 16 ? AF_INET6 : 0;
      if (family && inet_ntop(family, ip->data, text, sizeof text)) {
        info.ip_addresses.emplace_back(text);
      }
    }
  }
  info.is_ca = X509_check_ca(c) > 0;
  return info;
}

Status VerifyServingCertificate(const std::string& cert_pem, const std::string& key_pem,
                                const std::string& ca_bundle_pem, const std::string& host,
                                Clock::time_point now) {
  auto cert = ReadCert(cert_pem);
  if (!cert.ok()) return Status::Invalid("the certificate: " + cert.status().message());
  if (!key_pem.empty()) {
    auto key = ReadKey(key_pem);
    if (!key.ok()) return Status::Invalid("the key: " + key.status().message());
    if (X509_check_private_key(cert->get(), key->get()) != 1) {
      ERR_clear_error();
      return Status::Invalid("the private key does not match the certificate");
    }
  }
  Store store(X509_STORE_new());
  int cas = 0;
  for (const auto& block : SplitPemBundle(ca_bundle_pem)) {
    auto ca = ReadCert(block);
    if (ca.ok() && X509_STORE_add_cert(store.get(), ca->get()) == 1) ++cas;
  }
  if (cas == 0) return Status::Invalid("the CA bundle holds no certificate");
  StoreCtx ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), cert->get(), nullptr);
  X509_STORE_CTX_set_time(ctx.get(), 0, Clock::to_time_t(now));
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  if (IsIp(host)) {
    X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return Status::Invalid(std::string("the certificate does not verify for '") + host +
                           "': " + X509_verify_cert_error_string(err));
  }
  return Status::Ok();
}

bool RenewalDue(const CertificateInfo& info, Clock::time_point now) {
  return now >= info.not_before + (info.not_after - info.not_before) * 2 / 3;
}

std::vector<std::string> SplitPemBundle(const std::string& pem) {
  std::vector<std::string> blocks;
  static const std::string kBegin = "-----BEGIN ";
  size_t pos = 0;
  while ((pos = pem.find(kBegin, pos)) != std::string::npos) {
    size_t end = pem.find("-----END ", pos);
    if (end == std::string::npos) break;
    size_t close = pem.find("-----", end + 9);
    if (close == std::string::npos) break;
    close += 5;
    blocks.push_back(pem.substr(pos, close - pos) + "\n");
    pos = close;
  }
  return blocks;
}

}  // namespace sidelog::op
