// NATS decentralized authentication, as Sidelog's operator issues it (docs/security.md).
//
// An NKey is an Ed25519 key pair written the NATS way: base32 (no padding) of a prefix byte
// that names its role (operator O, account A, user U), the key and a CRC-16/XMODEM. A JWT is
// base64url(header).base64url(claims).base64url(signature), signed by the issuer's NKey
// ("alg": "ed25519-nkey"). The server trusts the operator JWT in its config; an account JWT
// signed by that operator; a user JWT signed by that account. A user's permissions live in
// its JWT, so every server of a cluster enforces them without a reload.
//
// Everything here is a pure function of its arguments (NKey::Generate reads OpenSSL's random
// source); values are immutable and safe to share across threads.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "sidelog/event.h"
#include "sidelog/status.h"

namespace sidelog::op {

enum class NKeyRole { kOperator, kAccount, kUser };

class NKey {
 public:
  static NKey Generate(NKeyRole role);
  // A seed as NKey::seed() writes it ("SO…", "SA…", "SU…"); Invalid when it is not one.
  static Result<NKey> FromSeed(std::string_view seed);

  NKeyRole role() const { return role_; }
  const std::string& public_key() const { return public_; }  // "O…", "A…", "U…"
  const std::string& seed() const { return seed_; }
  // The 64-byte Ed25519 signature of `data`.
  std::string Sign(std::string_view data) const;

 private:
  NKey(NKeyRole role, std::string raw_seed);
  NKeyRole role_;
  std::string raw_seed_;  // 32 bytes
  std::string public_;
  std::string seed_;
};

// Subjects a user may publish to and subscribe to. An empty allow list allows everything;
// deny wins over allow.
struct NatsPermissions {
  std::vector<std::string> publish_allow;
  std::vector<std::string> publish_deny;
  std::vector<std::string> subscribe_allow;
  std::vector<std::string> subscribe_deny;

  bool operator==(const NatsPermissions&) const = default;
  // Whether everything `other` allows this allows too (same deny lists, allow lists a
  // superset): a credential with `other` gains nothing over one with these.
  bool Covers(const NatsPermissions& other) const;
};

// As a user JWT holds them: {"pub": {"allow": [...], "deny": [...]}, "sub": {...}}.
Json PermissionsJson(const NatsPermissions& permissions);

// The self-signed operator JWT the servers trust, naming the system account.
std::string OperatorJwt(const NKey& op, const std::string& name, const std::string& system_account,
                        int64_t issued_at);

// An account JWT signed by `op`. `jetstream` enables JetStream without limits (the system
// account must not have it); `revocations` maps user public keys to the time (Unix seconds)
// at or before which every JWT issued to them is refused.
std::string AccountJwt(const NKey& op, const NKey& account, const std::string& name, bool jetstream,
                       const std::map<std::string, int64_t>& revocations, int64_t issued_at);

// A user JWT for `user_public`, signed by `account`, with `permissions`.
std::string UserJwt(const NKey& account, const std::string& user_public, const std::string& name,
                    const NatsPermissions& permissions, int64_t issued_at);

// A credentials file as `nsc generate creds` writes it, which nats.c and the nats CLI read.
std::string CredsFile(const std::string& user_jwt, const std::string& user_seed);

// The claims of a JWT (not verified), or Invalid when it is not a JWT.
Result<Json> JwtClaims(std::string_view jwt);

// What each kind of Sidelog client may do (docs/security.md, "What each identity may do").
//
// A sidecar of EventService `service` in namespace `ns`: publish commits to the subjects of the
// streams it produces; read (stream info, last message, ordered and pull consumers, acks and
// flow control) the streams it produces or consumes; its durable delivery consumers by name;
// delete consumers of those streams (libnats deletes the ephemeral consumers it made when a
// subscription ends, and their names are the server's: docs/security.md says what that leaves
// open); replies only to its own inbox prefix. Never a stream's create, update, delete or purge, a
// message delete, or another namespace's subjects.
NatsPermissions SidecarPermissions(const std::string& ns, const std::string& service,
                                   const std::vector<std::string>& produces,
                                   const std::vector<std::string>& consumes);
// A consolidator `name` in `ns` reading `streams`: the read half of the above.
NatsPermissions ConsolidatorPermissions(const std::string& ns, const std::string& name,
                                        const std::vector<std::string>& streams);

}  // namespace sidelog::op
