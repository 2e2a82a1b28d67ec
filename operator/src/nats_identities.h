// NatsIdentities: the NATS identity of every EventService and Consolidator, issued and revoked
// by the operator (docs/security.md).
//
// The operator holds a NATS operator key, the system account's key and one account, "sidelog",
// where every Sidelog stream lives. They are kept in one Secret of the operator's namespace
// (the authority), which also holds what the NATS servers need to trust them (auth.conf, for
// an `include`), every identity issued and the revocations:
//   operator.nk, system.nk, account.nk   the seeds
//   operator.jwt, system.jwt             the operator and the system account
//   account.jwt                          the account, with the revocations
//   auth.conf                            operator JWT, system account, full resolver, preload
//   identities.json                      {"<Kind>/<ns>/<name>": {seed, iat, grant, live users}}
//   revocations.json                     {"U...": unix seconds}
// Each EventService (and Consolidator) gets a Secret of its own, in its namespace and owned by
// it, holding nats.creds: a user JWT with the permissions its grant implies
// (SidecarPermissions, ConsolidatorPermissions) and the user's seed. Its content is a function
// of the authority's record (Ed25519 signatures are deterministic), so the operator only ever
// writes these Secrets, never reads them: it needs no right to read other namespaces' Secrets.
// When the grant changes, a new user is issued; the previous one is revoked unless the new
// permissions cover it. When the owner is gone, every user issued for it is revoked. A
// revocation is a new account JWT pushed to the servers through the system account
// ($SYS.REQ.CLAIMS.UPDATE), which disconnects the revoked users at once.
//
// Thread-safe: reconcilers of several workers call it; only the leader should call the methods
// that write (Ensure, Forget, Push).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kube_client.h"
#include "nats_identity.h"
#include "sidelog/jetstream.h"

namespace sidelog::op {

extern const ResourceType kSecrets;

inline constexpr const char* kNatsIdentityLabel = "sidelog.dev/nats-identity";
inline constexpr const char* kNatsUserAnnotation = "sidelog.dev/nats-user";
inline constexpr const char* kNatsCredsKey = "nats.creds";
// Where injected sidecars and consolidator pods mount their identity's Secret.
inline constexpr const char* kNatsIdentityDir = "/etc/sidelog/nats/identity";

// The Secret holding the credentials of EventService `name` (kind "EventService") or of
// Consolidator `name`: sidelog-nats-<name>, sidelog-nats-consolidator-<name>.
std::string NatsIdentitySecret(const std::string& kind, const std::string& name);

struct NatsIdentityOptions {
  std::string ns;                            // the authority Secret's namespace
  std::string secret = "sidelog-nats-auth";  // its name
  // Where the NATS servers keep account JWTs (the full resolver's dir, in auth.conf).
  std::string resolver_dir = "/data/jwt";
  std::chrono::milliseconds rewrite_every{std::chrono::minutes(10)};
};

class NatsIdentities {
 public:
  // Reads the authority Secret, creating it with new keys when it does not exist (any replica
  // may: the first create wins and the others read it). Unavailable when the API cannot be
  // reached; Invalid when the Secret holds keys that do not parse.
  static Result<std::unique_ptr<NatsIdentities>> Open(KubeApi* client, NatsIdentityOptions options);

  // The operator's own credentials (a user that may manage streams) and the system account's
  // (which pushes account updates), as creds file text. Issued anew at each call.
  std::string OperatorCreds() const;
  std::string SystemCreds() const;
  // The auth.conf the NATS servers include: it changes with every revocation.
  std::string AuthConf() const;

  // Where account updates go: a connection with SystemCreds(). Until it is set, revocations
  // are recorded and pushed by the first Push() after it.
  void SetSystemConnection(JetStream* system);
  // Pushes the account JWT unless the servers have this one already (after a reconnect, call
  // it with `force`: a restarted server may have lost it). Unavailable when NATS does not
  // answer; the next call tries again.
  Status Push(bool force = false);

  // Makes the owner's Secret hold a credential for `grant`: the streams it writes and those it
  // reads (a Consolidator writes none). A changed grant issues a new user and revokes the
  // previous one unless the new permissions cover it. An unchanged one writes the Secret again
  // only every `rewrite_every` (a Secret deleted by hand comes back then).
  struct Grant {
    std::vector<std::string> writes, reads;
  };
  Status Ensure(const Json& owner, const Grant& grant);
  // Revokes every user issued for `kind` `ns`/`name`, whose resource is gone.
  Status Forget(const std::string& kind, const std::string& ns, const std::string& name);

 private:
  NatsIdentities(KubeApi* client, NatsIdentityOptions options);
  Status Load(const Json& secret);
  Json SecretData() const;
  std::string AuthConfText() const;
  // Writes the authority Secret (guarded by its resourceVersion). With mu_ held.
  Status Save();
  // Pushes the account JWT unless the servers have it. With mu_ held.
  Status PushLocked();
  // A new account JWT for the current revocations, issued after the previous one.
  void ReissueAccount();

  KubeApi* client_;
  const NatsIdentityOptions options_;
  mutable std::mutex mu_;
  std::unique_ptr<NKey> operator_, system_, account_;
  // What was issued for each owner ("<Kind>/<ns>/<name>").
  struct Issued {
    std::string seed;  // the current user's
    int64_t issued_at = 0;
    Grant grant;
    std::vector<std::string> live;  // users issued and not revoked, the current one first
  };
  std::map<std::string, Issued> issued_;
  std::map<std::string, std::chrono::steady_clock::time_point> written_;  // Secret last applied
  std::map<std::string, int64_t> revocations_;
  std::string account_jwt_;
  int64_t account_issued_at_ = 0;
  Json secret_;  // as last read or written
  JetStream* system_js_ = nullptr;
  std::string pushed_;  // the account JWT the servers were last given
  bool dirty_ = false;  // the authority Secret is behind what this process holds
};

}  // namespace sidelog::op
