#include "nats_identities.h"

#include <algorithm>
#include <ctime>

#include "sidelog/base64.h"
#include "sidelog/log.h"
#include "webhook_certificates.h"

namespace sidelog::op {
namespace {

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

std::string OwnerKey(const std::string& kind, const std::string& ns, const std::string& name) {
  return kind + "/" + ns + "/" + name;
}

Result<std::unique_ptr<NKey>> SeedOf(const Json& secret, const char* key) {
  const std::string seed = SecretValue(&secret, key);
  auto k = NKey::FromSeed(seed);
  if (!k.ok()) return Status::Invalid(std::string(key) + ": " + k.status().message());
  return std::make_unique<NKey>(std::move(k).value());
}

}  // namespace

NatsIdentities::NatsIdentities(KubeApi* client, NatsIdentityOptions options)
    : client_(client), options_(std::move(options)) {}

Result<std::unique_ptr<NatsIdentities>> NatsIdentities::Open(KubeApi* client,
                                                             NatsIdentityOptions options) {
  std::unique_ptr<NatsIdentities> ids(new NatsIdentities(client, options));
  auto got = client->Get(kSecrets, options.ns, options.secret);
  if (got.ok()) {
    if (auto s = ids->Load(*got); !s.ok()) return s;
    return ids;
  }
  if (got.status().code() != Status::Code::kNotFound) return got.status();

  ids->operator_ = std::make_unique<NKey>(NKey::Generate(NKeyRole::kOperator));
  ids->system_ = std::make_unique<NKey>(NKey::Generate(NKeyRole::kAccount));
  ids->account_ = std::make_unique<NKey>(NKey::Generate(NKeyRole::kAccount));
  ids->ReissueAccount();
  const int64_t now = Now();
  Json secret = {
      {"apiVersion", "v1"},
      {"kind", "Secret"},
      {"type", "Opaque"},
      {"metadata",
       {{"name", options.secret},
        {"namespace", options.ns},
        {"labels",
         {{"app.kubernetes.io/managed-by", "sidelog-operator"},
          {"app.kubernetes.io/component", "nats-auth"}}}}},
      {"data",
       {{"operator.jwt",
         Base64Encode(OperatorJwt(*ids->operator_, "sidelog", ids->system_->public_key(), now))},
        {"system.jwt",
         Base64Encode(AccountJwt(*ids->operator_, *ids->system_, "SYS", false, {}, now))}}}};
  ids->secret_ = secret;
  secret["data"] = ids->SecretData();
  auto created = client->Create(kSecrets, options.ns, secret);
  if (created.ok()) {
    log::Info("created the NATS authority", {{"secret", options.ns + "/" + options.secret},
                                             {"account", ids->account_->public_key()}});
    ids->secret_ = *created;
    return ids;
  }
  if (created.status().code() != Status::Code::kConflict) return created.status();
  // Another replica created it first: use that one.
  auto theirs = client->Get(kSecrets, options.ns, options.secret);
  if (!theirs.ok()) return theirs.status();
  std::unique_ptr<NatsIdentities> other(new NatsIdentities(client, options));
  if (auto s = other->Load(*theirs); !s.ok()) return s;
  return other;
}

Status NatsIdentities::Load(const Json& secret) {
  const std::string where = "Secret " + options_.ns + "/" + options_.secret + ": ";
  for (auto [key, out] : {std::pair{"operator.nk", &operator_}, std::pair{"system.nk", &system_},
                          std::pair{"account.nk", &account_}}) {
    auto k = SeedOf(secret, key);
    if (!k.ok()) return Status::Invalid(where + k.status().message());
    *out = std::move(k).value();
  }
  account_jwt_ = SecretValue(&secret, "account.jwt");
  auto claims = JwtClaims(account_jwt_);
  if (!claims.ok()) return Status::Invalid(where + "account.jwt: " + claims.status().message());
  account_issued_at_ = claims->value("iat", int64_t{0});
  Json issued = Json::parse(SecretValue(&secret, "identities.json"), nullptr, false);
  Json revoked = Json::parse(SecretValue(&secret, "revocations.json"), nullptr, false);
  issued_.clear();
  revocations_.clear();
  auto strings = [](const Json& j) {
    std::vector<std::string> out;
    if (!j.is_array()) return out;
    for (const auto& v : j) {
      if (v.is_string()) out.push_back(v.get<std::string>());
    }
    return out;
  };
  if (issued.is_object()) {
    for (const auto& [owner, entry] : issued.items()) {
      if (!entry.is_object()) continue;
      Issued i;
      i.seed = entry.value("seed", "");
      i.issued_at = entry.value("iat", int64_t{0});
      i.grant.writes = strings(entry.value("writes", Json::array()));
      i.grant.reads = strings(entry.value("reads", Json::array()));
      i.live = strings(entry.value("live", Json::array()));
      if (!NKey::FromSeed(i.seed).ok()) {
        return Status::Invalid(where + "identities.json: the seed of " + owner + " is not one");
      }
      issued_[owner] = std::move(i);
    }
  }
  if (revoked.is_object()) {
    for (const auto& [user, at] : revoked.items()) {
      if (at.is_number_integer()) revocations_[user] = at.get<int64_t>();
    }
  }
  secret_ = secret;
  return Status::Ok();
}

void NatsIdentities::ReissueAccount() {
  account_issued_at_ = std::max(Now(), account_issued_at_ + 1);
  account_jwt_ = op::AccountJwt(*operator_, *account_, "sidelog", /*jetstream=*/true, revocations_,
                                account_issued_at_);
}

std::string NatsIdentities::AuthConf() const {
  std::lock_guard<std::mutex> lock(mu_);
  return AuthConfText();
}

std::string NatsIdentities::AuthConfText() const {
  return "# The NATS authority of sidelog-operator (docs/security.md): include it in the NATS\n"
         "# servers' config. It changes with every revocation; the servers also get each change\n"
         "# at once through the system account.\n"
         "operator: " +
         SecretValue(&secret_, "operator.jwt") + "\nsystem_account: " + system_->public_key() +
         "\nresolver: {type: full, dir: \"" + options_.resolver_dir +
         "\", allow_delete: false, interval: \"2m\"}\nresolver_preload: {\n  " +
         system_->public_key() + ": " + SecretValue(&secret_, "system.jwt") + "\n  " +
         account_->public_key() + ": " + account_jwt_ + "\n}\n";
}

Json NatsIdentities::SecretData() const {
  Json issued = Json::object();
  for (const auto& [owner, i] : issued_) {
    issued[owner] = {{"seed", i.seed},
                     {"iat", i.issued_at},
                     {"writes", i.grant.writes},
                     {"reads", i.grant.reads},
                     {"live", i.live}};
  }
  Json data = secret_.value("data", Json::object());
  data["operator.nk"] = Base64Encode(operator_->seed());
  data["system.nk"] = Base64Encode(system_->seed());
  data["account.nk"] = Base64Encode(account_->seed());
  data["account.jwt"] = Base64Encode(account_jwt_);
  data["identities.json"] = Base64Encode(issued.dump());
  data["revocations.json"] = Base64Encode(Json(revocations_).dump());
  data["auth.conf"] = Base64Encode(AuthConfText());
  return data;
}

std::string NatsIdentities::OperatorCreds() const {
  std::lock_guard<std::mutex> lock(mu_);
  NKey user = NKey::Generate(NKeyRole::kUser);
  return CredsFile(UserJwt(*account_, user.public_key(), "sidelog-operator", {}, Now()),
                   user.seed());
}

std::string NatsIdentities::SystemCreds() const {
  std::lock_guard<std::mutex> lock(mu_);
  NKey user = NKey::Generate(NKeyRole::kUser);
  return CredsFile(UserJwt(*system_, user.public_key(), "sidelog-operator-system", {}, Now()),
                   user.seed());
}

void NatsIdentities::SetSystemConnection(JetStream* system) {
  std::lock_guard<std::mutex> lock(mu_);
  system_js_ = system;
}

Status NatsIdentities::Push(bool force) {
  std::lock_guard<std::mutex> lock(mu_);
  if (force) pushed_.clear();
  return PushLocked();
}

Status NatsIdentities::PushLocked() {
  if (system_js_ == nullptr || pushed_ == account_jwt_) return Status::Ok();
  auto reply = system_js_->Request("$SYS.REQ.CLAIMS.UPDATE", account_jwt_, 5000);
  if (!reply.ok()) return reply.status();
  Json answer = Json::parse(*reply, nullptr, false);
  const Json data = answer.is_object() ? answer.value("data", Json::object()) : Json::object();
  if (data.value("code", 0) != 200) {
    return Status::Unavailable("NATS refused the account update: " + reply->substr(0, 300));
  }
  pushed_ = account_jwt_;
  log::Info("NATS account pushed", {{"account", account_->public_key()},
                                    {"revocations", static_cast<int64_t>(revocations_.size())}});
  return Status::Ok();
}

Status NatsIdentities::Save() {
  Json updated = secret_;
  updated["data"] = SecretData();
  auto w = client_->Update(kSecrets, updated);
  if (!w.ok() && w.status().code() == Status::Code::kConflict) {
    // Only the leader writes it: a conflict is a hand-over or an edit by hand. What this
    // process holds is the truth; take the new version and write it once more.
    auto fresh = client_->Get(kSecrets, options_.ns, options_.secret);
    if (!fresh.ok()) return fresh.status();
    updated["metadata"]["resourceVersion"] = (*fresh)["metadata"]["resourceVersion"];
    w = client_->Update(kSecrets, updated);
  }
  dirty_ = !w.ok();
  if (!w.ok()) return w.status();
  secret_ = *w;
  return Status::Ok();
}

std::string NatsIdentitySecret(const std::string& kind, const std::string& name) {
  return kind == "Consolidator" ? "sidelog-nats-consolidator-" + name : "sidelog-nats-" + name;
}

namespace {

NatsPermissions PermissionsOf(const std::string& kind, const std::string& ns,
                              const std::string& name, const NatsIdentities::Grant& g) {
  return kind == "Consolidator" ? ConsolidatorPermissions(ns, name, g.reads)
                                : SidecarPermissions(ns, name, g.writes, g.reads);
}

}  // namespace

Status NatsIdentities::Ensure(const Json& owner, const Grant& grant) {
  const Json& meta = owner["metadata"];
  const std::string ns = meta.value("namespace", "");
  const std::string name = meta.value("name", "");
  const std::string kind = owner.value("kind", "");
  const std::string key = OwnerKey(kind, ns, name);
  const NatsPermissions permissions = PermissionsOf(kind, ns, name, grant);
  const auto now = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  if (dirty_) {
    if (auto s = Save(); !s.ok()) return s;
  }
  Issued& i = issued_[key];
  bool revoked = false;
  const bool same =
      !i.seed.empty() && i.grant.writes == grant.writes && i.grant.reads == grant.reads;
  if (same) {
    auto w = written_.find(key);
    if (w != written_.end() && now - w->second < options_.rewrite_every) return PushLocked();
  } else {
    const bool covered =
        !i.seed.empty() && permissions.Covers(PermissionsOf(kind, ns, name, i.grant));
    NKey user = NKey::Generate(NKeyRole::kUser);
    std::vector<std::string> live = {user.public_key()};
    for (size_t k = 0; k < i.live.size(); ++k) {
      if (k == 0 && covered) {
        live.push_back(i.live[k]);  // pods still using it may do nothing the new one may not
      } else {
        revocations_[i.live[k]] = Now();
        revoked = true;
      }
    }
    i = Issued{user.seed(), Now(), grant, live};
    if (revoked) ReissueAccount();
    if (auto s = Save(); !s.ok()) return s;
    // Failing now, the revocation goes out with the next call or reconnect.
    if (auto s = PushLocked(); !s.ok()) {
      log::Warn("NATS account not pushed yet", {{"error", s.message()}});
    }
    log::Info(
        "NATS identity issued",
        {{"owner", kind + " " + ns + "/" + name}, {"user", live[0]}, {"previousRevoked", revoked}});
  }
  auto user = NKey::FromSeed(i.seed);
  if (!user.ok()) return user.status();
  const std::string creds =
      CredsFile(UserJwt(*account_, user->public_key(), key, permissions, i.issued_at), i.seed);
  lock.unlock();

  Json secret = {
      {"apiVersion", "v1"},
      {"kind", "Secret"},
      {"type", "Opaque"},
      {"metadata",
       {{"name", NatsIdentitySecret(kind, name)},
        {"namespace", ns},
        {"labels",
         {{"app.kubernetes.io/managed-by", "sidelog-operator"},
          {kNatsIdentityLabel, "true"},
          {kind == "Consolidator" ? "sidelog.dev/consolidator" : "sidelog.dev/service", name}}},
        {"annotations", {{kNatsUserAnnotation, user->public_key()}}},
        {"ownerReferences", Json::array({ControllerReference(owner)})}}},
      {"data", {{kNatsCredsKey, Base64Encode(creds)}}}};
  auto w = client_->Apply(kSecrets, secret);
  if (!w.ok()) return w.status();
  lock.lock();
  written_[key] = now;
  return Status::Ok();
}

Status NatsIdentities::Forget(const std::string& kind, const std::string& ns,
                              const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (dirty_) {
    if (auto s = Save(); !s.ok()) return s;
  }
  auto it = issued_.find(OwnerKey(kind, ns, name));
  if (it == issued_.end()) return PushLocked();
  for (const auto& u : it->second.live) revocations_[u] = Now();
  issued_.erase(it);
  written_.erase(OwnerKey(kind, ns, name));
  ReissueAccount();
  if (auto s = Save(); !s.ok()) return s;
  log::Info("NATS identity revoked", {{"owner", kind + " " + ns + "/" + name}});
  return PushLocked();
}

}  // namespace sidelog::op
