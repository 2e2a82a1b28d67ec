#include "nats_identity.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

#include "sidelog/base64.h"
#include "sidelog/names.h"

namespace sidelog::op {
namespace {

// Prefix bytes of the NKey encoding: the role's letter is the first base32 character.
constexpr uint8_t kPrefixSeed = 18 << 3;  // 'S'
uint8_t PrefixOf(NKeyRole role) {
  switch (role) {
    case NKeyRole::kOperator:
      return 14 << 3;  // 'O'
    case NKeyRole::kAccount:
      return 0;  // 'A'
    case NKeyRole::kUser:
      return 20 << 3;  // 'U'
  }
  return 0;
}

uint16_t Crc16(std::string_view data) {  // CRC-16/XMODEM
  uint16_t crc = 0;
  for (unsigned char byte : data) {
    crc ^= static_cast<uint16_t>(byte << 8);
    for (int i = 0; i < 8; ++i) {
      crc = (crc & 0x8000) != 0 ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                                : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc;
}

constexpr char kBase32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

std::string Base32(std::string_view raw) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char byte : raw) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += kBase32[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += kBase32[(buffer << (5 - bits)) & 31];
  return out;
}

bool Base32Decode(std::string_view text, std::string* raw) {
  raw->clear();
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    const char* at = std::find(kBase32, kBase32 + 32, c);
    if (at == kBase32 + 32) return false;
    buffer = (buffer << 5) | static_cast<uint32_t>(at - kBase32);
    bits += 5;
    if (bits >= 8) {
      raw->push_back(static_cast<char>((buffer >> (bits - 8)) & 0xFF));
      bits -= 8;
    }
  }
  return true;
}

std::string WithCrc(std::string raw) {
  uint16_t crc = Crc16(raw);
  raw.push_back(static_cast<char>(crc & 0xFF));
  raw.push_back(static_cast<char>(crc >> 8));
  return raw;
}

struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

Pkey PrivateKey(const std::string& raw_seed) {
  Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                        reinterpret_cast<const unsigned char*>(raw_seed.data()),
                                        raw_seed.size()));
  if (!key) throw std::runtime_error("OpenSSL cannot make an Ed25519 key");
  return key;
}

std::string Base64Url(std::string_view raw) {
  std::string b = Base64Encode(std::string(raw));
  for (char& c : b) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  while (!b.empty() && b.back() == '=') b.pop_back();
  return b;
}

std::string Sha256(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("OpenSSL cannot hash");
  }
  return {reinterpret_cast<const char*>(digest), size};
}

// header.claims.signature, with jti the hash of the claims without it, as nsc writes them.
std::string Encode(const NKey& issuer, const std::string& subject, const std::string& name,
                   Json nats, int64_t issued_at) {
  nats["version"] = 2;
  Json claims = {{"iat", issued_at},
                 {"iss", issuer.public_key()},
                 {"name", name},
                 {"sub", subject},
                 {"nats", std::move(nats)}};
  claims["jti"] = Base32(Sha256(claims.dump()));
  const std::string signing_input =
      Base64Url(R"({"typ":"JWT","alg":"ed25519-nkey"})") + "." + Base64Url(claims.dump());
  return signing_input + "." + Base64Url(issuer.Sign(signing_input));
}

Json Permission(const std::vector<std::string>& allow, const std::vector<std::string>& deny) {
  Json p = Json::object();
  if (!allow.empty()) p["allow"] = allow;
  if (!deny.empty()) p["deny"] = deny;
  return p;
}

bool Contains(const std::vector<std::string>& set, const std::vector<std::string>& subset) {
  return std::all_of(subset.begin(), subset.end(), [&](const std::string& s) {
    return std::find(set.begin(), set.end(), s) != set.end();
  });
}

// What reading stream `s` of `ns` takes: its info and last message, ordered (push) and pull
// consumers with their acks and flow control, and `durable` by name.
void AddRead(const std::string& ns, const std::string& s, const std::string& durable,
             std::vector<std::string>* allow) {
  const std::string j = JetStreamName(ns, s);
  for (const std::string& subject :
       {"$JS.API.STREAM.INFO." + j, "$JS.API.STREAM.MSG.GET." + j, "$JS.API.DIRECT.GET." + j,
        "$JS.API.DIRECT.GET." + j + ".>", "$JS.API.CONSUMER.CREATE." + j,
        "$JS.API.CONSUMER.CREATE." + j + ".>", "$JS.API.CONSUMER.INFO." + j + ".>",
        "$JS.API.CONSUMER.DELETE." + j + ".>", "$JS.API.CONSUMER.MSG.NEXT." + j + ".>",
        "$JS.ACK." + j + ".>", "$JS.FC." + j + ".>"}) {
    allow->push_back(subject);
  }
  if (!durable.empty()) {
    allow->push_back("$JS.API.CONSUMER.DURABLE.CREATE." + j + "." + durable);
  }
}

// What no Sidelog client but the operator may ever do, named even where the allow list would
// refuse it already, so that a wider allow list cannot grant it by mistake.
const std::vector<std::string>& NeverAllowed() {
  static const std::vector<std::string> subjects = {"$JS.API.STREAM.CREATE.>",
                                                    "$JS.API.STREAM.UPDATE.>",
                                                    "$JS.API.STREAM.DELETE.>",
                                                    "$JS.API.STREAM.PURGE.>",
                                                    "$JS.API.STREAM.MSG.DELETE.>",
                                                    "$JS.API.STREAM.SNAPSHOT.>",
                                                    "$JS.API.STREAM.RESTORE.>",
                                                    "$JS.API.META.>",
                                                    "$JS.API.SERVER.>",
                                                    "$JS.API.ACCOUNT.>",
                                                    "$SYS.>"};
  return subjects;
}

}  // namespace

NKey::NKey(NKeyRole role, std::string raw_seed) : role_(role), raw_seed_(std::move(raw_seed)) {
  const uint8_t prefix = PrefixOf(role);
  Pkey key = PrivateKey(raw_seed_);
  std::string raw_public(32, '\0');
  size_t size = raw_public.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), reinterpret_cast<unsigned char*>(raw_public.data()),
                                  &size) != 1) {
    throw std::runtime_error("OpenSSL cannot derive an Ed25519 public key");
  }
  public_ = Base32(WithCrc(std::string(1, static_cast<char>(prefix)) + raw_public));
  std::string seed_prefix = {static_cast<char>(kPrefixSeed | (prefix >> 5)),
                             static_cast<char>((prefix & 31) << 3)};
  seed_ = Base32(WithCrc(seed_prefix + raw_seed_));
}

NKey NKey::Generate(NKeyRole role) {
  std::string raw(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), 32) != 1) {
    throw std::runtime_error("OpenSSL's random source failed");
  }
  return {role, std::move(raw)};
}

Result<NKey> NKey::FromSeed(std::string_view seed) {
  std::string raw;
  if (!Base32Decode(seed, &raw) || raw.size() != 36) {
    return Status::Invalid("an NKey seed is 58 base32 characters");
  }
  const std::string body = raw.substr(0, 34);
  const uint16_t crc = static_cast<uint16_t>(static_cast<unsigned char>(raw[34]) |
                                             (static_cast<unsigned char>(raw[35]) << 8));
  if (Crc16(body) != crc) return Status::Invalid("the NKey seed's checksum does not match");
  const auto b0 = static_cast<uint8_t>(body[0]);
  const auto b1 = static_cast<uint8_t>(body[1]);
  if ((b0 & 0xF8) != kPrefixSeed) return Status::Invalid("this NKey is not a seed");
  const auto prefix = static_cast<uint8_t>(((b0 & 7) << 5) | ((b1 & 0xF8) >> 3));
  for (NKeyRole role : {NKeyRole::kOperator, NKeyRole::kAccount, NKeyRole::kUser}) {
    if (PrefixOf(role) == prefix) return NKey(role, body.substr(2));
  }
  return Status::Invalid("the NKey seed is not an operator's, an account's or a user's");
}

std::string NKey::Sign(std::string_view data) const {
  Pkey key = PrivateKey(raw_seed_);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::string signature(64, '\0');
  size_t size = signature.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &size,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
    throw std::runtime_error("OpenSSL cannot sign with Ed25519");
  }
  return signature;
}

bool NatsPermissions::Covers(const NatsPermissions& other) const {
  return publish_deny == other.publish_deny && subscribe_deny == other.subscribe_deny &&
         (publish_allow.empty() ||
          (!other.publish_allow.empty() && Contains(publish_allow, other.publish_allow))) &&
         (subscribe_allow.empty() ||
          (!other.subscribe_allow.empty() && Contains(subscribe_allow, other.subscribe_allow)));
}

Json PermissionsJson(const NatsPermissions& p) {
  return {{"pub", Permission(p.publish_allow, p.publish_deny)},
          {"sub", Permission(p.subscribe_allow, p.subscribe_deny)}};
}

std::string OperatorJwt(const NKey& op, const std::string& name, const std::string& system_account,
                        int64_t issued_at) {
  return Encode(op, op.public_key(), name,
                {{"type", "operator"}, {"system_account", system_account}}, issued_at);
}

std::string AccountJwt(const NKey& op, const NKey& account, const std::string& name, bool jetstream,
                       const std::map<std::string, int64_t>& revocations, int64_t issued_at) {
  const int64_t js = jetstream ? -1 : 0;
  Json nats = {{"type", "account"},
               {"limits",
                {{"subs", -1},
                 {"data", -1},
                 {"payload", -1},
                 {"imports", -1},
                 {"exports", -1},
                 {"wildcards", true},
                 {"conn", -1},
                 {"leaf", -1},
                 {"mem_storage", js},
                 {"disk_storage", js},
                 {"streams", js},
                 {"consumer", js}}},
               {"default_permissions", {{"pub", Json::object()}, {"sub", Json::object()}}}};
  if (!revocations.empty()) nats["revocations"] = revocations;
  return Encode(op, account.public_key(), name, std::move(nats), issued_at);
}

std::string UserJwt(const NKey& account, const std::string& user_public, const std::string& name,
                    const NatsPermissions& p, int64_t issued_at) {
  Json nats = PermissionsJson(p);
  nats["type"] = "user";
  nats["subs"] = -1;
  nats["data"] = -1;
  nats["payload"] = -1;
  return Encode(account, user_public, name, std::move(nats), issued_at);
}

std::string CredsFile(const std::string& user_jwt, const std::string& user_seed) {
  return "-----BEGIN NATS USER JWT-----\n" + user_jwt +
         "\n------END NATS USER JWT------\n\n"
         "************************* IMPORTANT *************************\n"
         "NKEY Seed printed below can be used to sign and prove identity.\n"
         "NKEYs are sensitive and should be treated as secrets.\n\n"
         "-----BEGIN USER NKEY SEED-----\n" +
         user_seed +
         "\n------END USER NKEY SEED------\n\n"
         "*************************************************************\n";
}

Result<Json> JwtClaims(std::string_view jwt) {
  auto first = jwt.find('.');
  auto second = first == std::string_view::npos ? first : jwt.find('.', first + 1);
  if (second == std::string_view::npos) return Status::Invalid("not a JWT: it has no two dots");
  std::string body(jwt.substr(first + 1, second - first - 1));
  for (char& c : body) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  while (body.size() % 4 != 0) body += '=';
  auto decoded = Base64Decode(body, "JWT claims");
  if (!decoded.ok()) return decoded.status();
  Json claims = Json::parse(*decoded, nullptr, false);
  if (!claims.is_object()) return Status::Invalid("the JWT's claims are not a JSON object");
  return claims;
}

NatsPermissions SidecarPermissions(const std::string& ns, const std::string& service,
                                   const std::vector<std::string>& produces,
                                   const std::vector<std::string>& consumes) {
  NatsPermissions p;
  std::vector<std::string> read = produces;
  for (const auto& s : consumes) {
    if (std::find(read.begin(), read.end(), s) == read.end()) read.push_back(s);
  }
  for (const auto& s : produces) p.publish_allow.push_back(StreamSubjects(ns, s));
  for (const auto& s : read) {
    AddRead(ns, s, "sidelog-" + ns + "-" + service + "-" + s, &p.publish_allow);
  }
  p.publish_deny = NeverAllowed();
  p.subscribe_allow = {SidecarInboxPrefix(ns, service) + ".>"};
  return p;
}

NatsPermissions ConsolidatorPermissions(const std::string& ns, const std::string& name,
                                        const std::vector<std::string>& streams) {
  NatsPermissions p;
  for (const auto& s : streams) AddRead(ns, s, "", &p.publish_allow);
  p.publish_deny = NeverAllowed();
  p.subscribe_allow = {ConsolidatorInboxPrefix(ns, name) + ".>"};
  return p;
}

}  // namespace sidelog::op
