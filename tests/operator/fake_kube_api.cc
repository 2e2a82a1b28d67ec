#include "fake_kube_api.h"

#include <chrono>
#include <sstream>

namespace sidelog::op {
namespace {

bool Selects(const Selector& selector, const Json& object) {
  if (selector.labels.empty()) return true;
  const Json labels = object["metadata"].value("labels", Json::object());
  std::stringstream ss(selector.labels);
  std::string term;
  while (std::getline(ss, term, ',')) {
    auto eq = term.find('=');
    if (eq == std::string::npos) {
      if (!labels.contains(term)) return false;
      continue;
    }
    if (labels.value(term.substr(0, eq), std::string("\x01")) != term.substr(eq + 1)) return false;
  }
  return true;
}

Json WithoutStatus(const Json& o) {
  Json c = o;
  c.erase("status");
  c["metadata"].erase("resourceVersion");
  return c;
}

}  // namespace

int FakeKubeApi::Writes(const std::string& verb, const std::string& resource) const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& [k, v] : writes_) {
    if (resource.empty() ? k.rfind(verb + " ", 0) == 0 : k == verb + " " + resource) n += v;
  }
  return n;
}

void FakeKubeApi::FailNextWrite(Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  fail_next_ = std::move(status);
}

Status FakeKubeApi::CountWriteLocked(const std::string& verb, const ResourceType& type,
                                     const std::string& subresource) {
  if (shut_down_) return Status::Unavailable("the fake API is shut down");
  ++writes_[verb + " " + type.plural + (subresource.empty() ? "" : "/" + subresource)];
  Status s = fail_next_;
  fail_next_ = Status::Ok();
  return s;
}

Json FakeKubeApi::MergeSubresource(const Json& before, const Json& after,
                                   const std::string& subresource) {
  if (subresource == "status") {
    Json out = before;
    if (after.contains("status")) {
      out["status"] = after["status"];
    } else {
      out.erase("status");
    }
    return out;
  }
  Json out = after;
  if (before.contains("status")) {
    out["status"] = before["status"];
  } else {
    out.erase("status");
  }
  return out;
}

Json FakeKubeApi::StoreLocked(const ResourceType& type, Json object, const Json* before) {
  Json& meta = object["metadata"];
  if (before) {
    const Json& b = (*before)["metadata"];
    for (const char* f : {"uid", "creationTimestamp", "generation", "namespace", "name"}) {
      if (b.contains(f)) meta[f] = b[f];
    }
    if (!type.group.empty() && before->value("spec", Json()) != object.value("spec", Json())) {
      meta["generation"] = b.value("generation", int64_t{1}) + 1;
    }
  } else {
    meta["uid"] = "uid-" + std::to_string(++uid_);
    meta["creationTimestamp"] = KubeTimeNow();
    if (!type.group.empty()) meta["generation"] = 1;
  }
  object["apiVersion"] = type.ApiVersion();
  object["kind"] = type.kind;
  meta["resourceVersion"] = std::to_string(++rv_);
  const std::string key = KeyOf(meta.value("namespace", ""), meta.value("name", ""));
  // A deleting object whose last finalizer went is gone.
  const bool gone =
      meta.contains("deletionTimestamp") && meta.value("finalizers", Json::array()).empty();
  auto& kind = objects_[KindOf(type)];
  if (gone) {
    kind.erase(key);
  } else {
    kind[key] = object;
  }
  changes_.push_back(
      {rv_, KindOf(type), gone ? "DELETED" : (before ? "MODIFIED" : "ADDED"), object});
  cv_.notify_all();
  return object;
}

Result<Json> FakeKubeApi::Get(const ResourceType& type, const std::string& ns,
                              const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& kind = objects_[KindOf(type)];
  auto it = kind.find(KeyOf(ns, name));
  if (it == kind.end()) return Status::NotFound(type.plural + " \"" + name + "\" not found");
  return it->second;
}

Result<Json> FakeKubeApi::List(const ResourceType& type, const std::string& ns,
                               const ListOptions& options) {
  std::lock_guard<std::mutex> lock(mu_);
  Json items = Json::array();
  for (const auto& [key, o] : objects_[KindOf(type)]) {
    if (!ns.empty() && o["metadata"].value("namespace", "") != ns) continue;
    if (Selects(options.selector, o)) items.push_back(o);
  }
  return Json{{"items", items}, {"metadata", {{"resourceVersion", std::to_string(rv_)}}}};
}

Result<Json> FakeKubeApi::Create(const ResourceType& type, const std::string& ns,
                                 const Json& object) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status s = CountWriteLocked("create", type, ""); !s.ok()) return s;
  Json o = object;
  o["metadata"]["namespace"] = ns;
  if (o["metadata"].value("name", "").empty())
    o["metadata"]["name"] = o["metadata"].value("generateName", "") + std::to_string(++uid_);
  const std::string name = o["metadata"].value("name", "");
  if (objects_[KindOf(type)].count(KeyOf(ns, name)))
    return Status::Conflict(type.plural + " \"" + name + "\" already exists");
  return StoreLocked(type, std::move(o), nullptr);
}

Result<Json> FakeKubeApi::Update(const ResourceType& type, const Json& object,
                                 const std::string& subresource) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status s = CountWriteLocked("update", type, subresource); !s.ok()) return s;
  const Json& m = object.at("metadata");
  auto& kind = objects_[KindOf(type)];
  auto it = kind.find(KeyOf(m.value("namespace", ""), m.value("name", "")));
  if (it == kind.end()) return Status::NotFound(type.plural + " not found");
  if (m.value("resourceVersion", "") != it->second["metadata"].value("resourceVersion", ""))
    return Status::Conflict("the object has been modified");
  const Json before = it->second;
  return StoreLocked(type, MergeSubresource(before, object, subresource), &before);
}

Result<Json> FakeKubeApi::MergePatch(const ResourceType& type, const std::string& ns,
                                     const std::string& name, const Json& patch,
                                     const std::string& subresource) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status s = CountWriteLocked("patch", type, subresource); !s.ok()) return s;
  auto& kind = objects_[KindOf(type)];
  auto it = kind.find(KeyOf(ns, name));
  if (it == kind.end()) return Status::NotFound(type.plural + " \"" + name + "\" not found");
  const std::string want_rv = patch.value("metadata", Json::object()).value("resourceVersion", "");
  if (!want_rv.empty() && want_rv != it->second["metadata"].value("resourceVersion", ""))
    return Status::Conflict("the object has been modified");
  const Json before = it->second;
  Json after = before;
  after.merge_patch(patch);
  return StoreLocked(type, MergeSubresource(before, after, subresource), &before);
}

Result<Json> FakeKubeApi::Apply(const ResourceType& type, const Json& object,
                                const std::string& subresource) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status s = CountWriteLocked("apply", type, subresource); !s.ok()) return s;
  const Json& m = object.at("metadata");
  auto& kind = objects_[KindOf(type)];
  auto it = kind.find(KeyOf(m.value("namespace", ""), m.value("name", "")));
  if (it == kind.end()) return StoreLocked(type, object, nullptr);
  const Json before = it->second;
  Json after = before;
  after.merge_patch(object);
  // Lists (ownerReferences, items) are replaced whole by the intent, as a merge patch does.
  if (WithoutStatus(after) == WithoutStatus(before)) return before;  // no change, no new version
  return StoreLocked(type, MergeSubresource(before, after, subresource), &before);
}

Status FakeKubeApi::Delete(const ResourceType& type, const std::string& ns,
                           const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status s = CountWriteLocked("delete", type, ""); !s.ok()) return s;
  auto& kind = objects_[KindOf(type)];
  auto it = kind.find(KeyOf(ns, name));
  if (it == kind.end()) return Status::NotFound(type.plural + " \"" + name + "\" not found");
  Json o = it->second;
  if (!o["metadata"].contains("deletionTimestamp"))
    o["metadata"]["deletionTimestamp"] = KubeTimeNow();
  const Json before = it->second;
  StoreLocked(type, std::move(o), &before);
  return Status::Ok();
}

Status FakeKubeApi::Watch(const ResourceType& type, const std::string& ns,
                          const WatchOptions& options, const std::function<bool(WatchEvent&)>& fn) {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t from = options.resource_version.empty() ? rv_ : std::stoull(options.resource_version);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(options.timeout_seconds);
  size_t next = 0;
  while (true) {
    if (shut_down_) return Status::Unavailable("the fake API is shut down");
    for (; !hold_ && next < changes_.size(); ++next) {
      const Change& c = changes_[next];
      if (c.rv <= from || c.kind != KindOf(type)) continue;
      if (!ns.empty() && c.object["metadata"].value("namespace", "") != ns) continue;
      if (!Selects(options.selector, c.object)) continue;
      WatchEvent ev{c.type, c.object};
      from = c.rv;
      lock.unlock();
      bool more = fn(ev);
      lock.lock();
      if (!more) return Status::Ok();
    }
    // The predicate also sees a Shutdown that came while `fn` ran with the lock released.
    if (!cv_.wait_until(lock, deadline,
                        [&] { return shut_down_ || (!hold_ && next < changes_.size()); })) {
      return Status::Ok();
    }
  }
}

void FakeKubeApi::HoldWatches(bool hold) {
  std::lock_guard<std::mutex> lock(mu_);
  hold_ = hold;
  cv_.notify_all();
}

void FakeKubeApi::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shut_down_ = true;
  cv_.notify_all();
}

}  // namespace sidelog::op
