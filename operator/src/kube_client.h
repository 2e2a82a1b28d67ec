// KubeClient: JSON over HTTPS to the Kubernetes API, on cpprestsdk. Requests block the calling
// thread (call it from worker, informer or election threads, never from a cpprestsdk
// callback). Errors are Status values, typed by HTTP code:
//   404 NotFound, 409 Conflict (AlreadyExists or a stale resourceVersion), 410 Gone,
//   422 Invalid, 403/401 Forbidden, 429 and 5xx Unavailable with retry_after_seconds from
//   Retry-After, a connection failure Unavailable.
// The message is the API server's own (its Status object's message).
//
// Thread-safe.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "kube_config.h"
#include "sidelog/status.h"

namespace sidelog::op {

using Json = nlohmann::json;

// A kind of object and where the API serves it.
struct ResourceType {
  std::string group;  // empty for the core group
  std::string version;
  std::string plural;
  std::string kind;
  bool namespaced = true;

  std::string ApiVersion() const { return group.empty() ? version : group + "/" + version; }
  // The collection's path, in namespace `ns` (all namespaces when empty).
  std::string Path(const std::string& ns) const;
  // An object's path; `subresource` is e.g. "status".
  std::string Path(const std::string& ns, const std::string& name,
                   const std::string& subresource = "") const;
};

// A watch event: type ADDED, MODIFIED, DELETED or BOOKMARK, and the object.
struct WatchEvent {
  std::string type;
  Json object;
};

class KubeClient {
 public:
  explicit KubeClient(KubeConfig config);
  ~KubeClient();
  KubeClient(const KubeClient&) = delete;
  KubeClient& operator=(const KubeClient&) = delete;

  const KubeConfig& config() const { return config_; }

  Result<Json> Get(const ResourceType& type, const std::string& ns, const std::string& name);
  // One page of a list (limit objects, from `continue_token`); the list's metadata carries
  // resourceVersion and continue.
  Result<Json> List(const ResourceType& type, const std::string& ns, int limit = 500,
                    const std::string& continue_token = "");
  Result<Json> Create(const ResourceType& type, const std::string& ns, const Json& object);
  // PUT of the whole object, guarded by its metadata.resourceVersion (Conflict when stale).
  Result<Json> Update(const ResourceType& type, const Json& object,
                      const std::string& subresource = "");
  // A JSON merge patch (RFC 7386). A metadata.resourceVersion in the patch makes it
  // conditional.
  Result<Json> MergePatch(const ResourceType& type, const std::string& ns, const std::string& name,
                          const Json& patch, const std::string& subresource = "");
  Status Delete(const ResourceType& type, const std::string& ns, const std::string& name);

  // Watches from `resource_version` (with bookmarks), calling `fn` for each event until `fn`
  // returns false (Ok), the server ends the watch after about `timeout_seconds` (Ok), the
  // version is too old (Gone: relist), or the connection fails (Unavailable).
  Status Watch(const ResourceType& type, const std::string& ns, const std::string& resource_version,
               int timeout_seconds, const std::function<bool(WatchEvent&)>& fn);

  // Cancels every request in flight and refuses new ones (Unavailable). For shutdown.
  void Shutdown();

 private:
  struct Impl;
  KubeConfig config_;
  std::unique_ptr<Impl> impl_;
};

// metadata.namespace + "/" + metadata.name (or the name alone for cluster objects).
std::string ObjectKey(const Json& object);
// Splits "ns/name" (or "name").
void SplitKey(const std::string& key, std::string* ns, std::string* name);

// Now as RFC 3339 with seconds (metav1.Time) or microseconds (metav1.MicroTime).
std::string KubeTimeNow();
std::string KubeMicroTimeNow();

}  // namespace sidelog::op
