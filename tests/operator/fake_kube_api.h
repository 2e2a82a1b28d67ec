// FakeKubeApi: an in-memory Kubernetes API for unit tests of reconcilers and of the manager.
// It keeps objects by kind, namespace and name and behaves as the API server does where a
// reconciler can tell: resourceVersions from one counter, uid and creationTimestamp on create,
// metadata.generation bumped by spec changes only (custom kinds), the status subresource apart
// from the main resource, conditional writes (Conflict), merge patches (RFC 7386), server-side
// apply as a merge of the applied intent, finalizers holding a deletion, label selectors of
// the form k=v,k2=v2, and watches that see every change after their resourceVersion.
//
// Tests seed objects with Create, make changes with the same calls, read what the operator
// wrote with Get, and count writes with Writes(). Thread-safe.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "kube_client.h"

namespace sidelog::op {

class FakeKubeApi : public KubeApi {
 public:
  Result<Json> Get(const ResourceType& type, const std::string& ns,
                   const std::string& name) override;
  Result<Json> List(const ResourceType& type, const std::string& ns,
                    const ListOptions& options = {}) override;
  Result<Json> Create(const ResourceType& type, const std::string& ns, const Json& object) override;
  Result<Json> Update(const ResourceType& type, const Json& object,
                      const std::string& subresource = "") override;
  Result<Json> MergePatch(const ResourceType& type, const std::string& ns, const std::string& name,
                          const Json& patch, const std::string& subresource = "") override;
  Result<Json> Apply(const ResourceType& type, const Json& object,
                     const std::string& subresource = "") override;
  Status Delete(const ResourceType& type, const std::string& ns, const std::string& name) override;
  Status Watch(const ResourceType& type, const std::string& ns, const WatchOptions& options,
               const std::function<bool(WatchEvent&)>& fn) override;
  void Shutdown() override;

  // Writes so far of `verb` (create, update, patch, apply, delete) to `resource` ("plural" or
  // "plural/status"); an empty resource counts every resource.
  int Writes(const std::string& verb, const std::string& resource = "") const;
  // The next write of any kind fails with `status`, once.
  void FailNextWrite(Status status);
  // While held, watches deliver nothing (a lagging watch); writes go on.
  void HoldWatches(bool hold);

 private:
  struct Change {
    uint64_t rv;
    std::string kind;  // group/plural
    std::string type;  // ADDED, MODIFIED, DELETED
    Json object;
  };
  static std::string KindOf(const ResourceType& type) { return type.group + "/" + type.plural; }
  static std::string KeyOf(const std::string& ns, const std::string& name) {
    return ns + "/" + name;
  }
  // Stores `object` as the new state (bumping resourceVersion, and generation when the spec
  // changed) and records the change; returns what was stored.
  Json StoreLocked(const ResourceType& type, Json object, const Json* before);
  Status CountWriteLocked(const std::string& verb, const ResourceType& type,
                          const std::string& subresource);
  // A write to the main resource keeps the stored status; one to status keeps the rest.
  Json MergeSubresource(const Json& before, const Json& after, const std::string& subresource);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::map<std::string, Json>> objects_;  // kind -> ns/name -> object
  std::vector<Change> changes_;
  std::map<std::string, int> writes_;  // "verb resource" -> count
  uint64_t rv_ = 100;
  uint64_t uid_ = 0;
  Status fail_next_ = Status::Ok();
  bool shut_down_ = false;
  bool hold_ = false;
};

}  // namespace sidelog::op
