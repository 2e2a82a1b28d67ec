// KubeApi: the Kubernetes API as the operator uses it. KubeClient speaks it over HTTPS to a
// real API server; tests of reconcilers use FakeKubeApi (tests/operator/fake_kube_api.h).
//
// Requests block the calling thread (call them from worker, informer or election threads,
// never from a cpprestsdk callback). Errors are Status values, typed by HTTP code:
//   404 NotFound, 409 Conflict (AlreadyExists or a stale resourceVersion), 410 Gone,
//   422 Invalid, 403/401 Forbidden, 429 and 5xx Unavailable with retry_after_seconds from
//   Retry-After, a connection failure Unavailable.
// The message is the API server's own (its Status object's message).
//
// Implementations are thread-safe.
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

// One line of a watch response: the event, or Gone (410: the resourceVersion is too old, list
// again) or Unavailable (an ERROR event, or a line that is not {type, object}).
Result<WatchEvent> DecodeWatchEvent(const std::string& line);

// Which objects a list or watch returns: label and field selectors as kubectl takes them
// ("app=x,tier!=db", "metadata.name=y"); empty selects everything.
struct Selector {
  std::string labels;
  std::string fields;
  bool empty() const { return labels.empty() && fields.empty(); }
  bool operator==(const Selector& o) const { return labels == o.labels && fields == o.fields; }
};

struct ListOptions {
  Selector selector;
  int limit = 500;             // objects per page
  std::string continue_token;  // the previous page's metadata.continue
};

struct WatchOptions {
  Selector selector;
  std::string resource_version;  // watch from here (empty: from now)
  int timeout_seconds = 300;     // the server ends the watch after about this long
};

// The field manager of every server-side apply the operator makes.
inline constexpr const char* kFieldManager = "sidelog-operator";

class KubeApi {
 public:
  virtual ~KubeApi() = default;

  virtual Result<Json> Get(const ResourceType& type, const std::string& ns,
                           const std::string& name) = 0;
  // One page of a list; the list's metadata carries resourceVersion and continue.
  virtual Result<Json> List(const ResourceType& type, const std::string& ns,
                            const ListOptions& options = {}) = 0;
  virtual Result<Json> Create(const ResourceType& type, const std::string& ns,
                              const Json& object) = 0;
  // PUT of the whole object, guarded by its metadata.resourceVersion (Conflict when stale).
  virtual Result<Json> Update(const ResourceType& type, const Json& object,
                              const std::string& subresource = "") = 0;
  // A JSON merge patch (RFC 7386). A metadata.resourceVersion in the patch makes it
  // conditional.
  virtual Result<Json> MergePatch(const ResourceType& type, const std::string& ns,
                                  const std::string& name, const Json& patch,
                                  const std::string& subresource = "") = 0;
  // Server-side apply of `object` (a whole intent: apiVersion, kind, metadata.name, and the
  // fields this operator owns) as field manager kFieldManager, forcing conflicts: the
  // operator owns what it applies. Creates the object when it does not exist.
  virtual Result<Json> Apply(const ResourceType& type, const Json& object,
                             const std::string& subresource = "") = 0;
  virtual Status Delete(const ResourceType& type, const std::string& ns,
                        const std::string& name) = 0;

  // Watches (with bookmarks), calling `fn` for each event until `fn` returns false (Ok), the
  // server ends the watch after about options.timeout_seconds (Ok), the version is too old
  // (Gone: relist), or the connection fails (Unavailable).
  virtual Status Watch(const ResourceType& type, const std::string& ns, const WatchOptions& options,
                       const std::function<bool(WatchEvent&)>& fn) = 0;

  // Cancels every request in flight and refuses new ones (Unavailable). For shutdown.
  virtual void Shutdown() = 0;
};

// KubeApi over HTTPS, on cpprestsdk.
class KubeClient : public KubeApi {
 public:
  explicit KubeClient(KubeConfig config);
  ~KubeClient() override;
  KubeClient(const KubeClient&) = delete;
  KubeClient& operator=(const KubeClient&) = delete;

  const KubeConfig& config() const { return config_; }

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

 private:
  struct Impl;
  KubeConfig config_;
  std::unique_ptr<Impl> impl_;
};

// metadata.namespace + "/" + metadata.name (or the name alone for cluster objects).
std::string ObjectKey(const Json& object);
// Splits "ns/name" (or "name").
void SplitKey(const std::string& key, std::string* ns, std::string* name);

// metadata.resourceVersion as a number, or 0 when it is not one. resourceVersions are opaque
// to clients, but the API server hands out etcd revisions: of two versions of one object, the
// larger number is the later.
uint64_t ResourceVersionOf(const Json& object);

// The ownerReference that makes `owner` the controller of an object (garbage collection
// deletes the object with its owner).
Json ControllerReference(const Json& owner);

// Now as RFC 3339 with seconds (metav1.Time) or microseconds (metav1.MicroTime).
std::string KubeTimeNow();
std::string KubeMicroTimeNow();

// "a, b, c": names in messages and conditions.
std::string Join(const std::vector<std::string>& items, const char* sep = ", ");

}  // namespace sidelog::op
