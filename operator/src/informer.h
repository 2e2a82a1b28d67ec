// Informer: a shared, always-current cache of one kind of object, kept by list + watch.
//
// It lists (in pages), then watches from the list's resourceVersion with bookmarks, so a
// reconnect resumes where it stopped; a 410 Gone (the version fell out of etcd's window) makes
// it relist. Connection failures retry with exponential backoff (200 ms to 30 s). A selector
// narrows what it lists and watches. Cached objects carry no metadata.managedFields (bulky,
// and nothing here reads them).
//
// Every change is reported to the handlers as an ObjectEvent that carries the object before
// and after, so a handler can tell a spec change from a status update, and map an object to
// the keys of the objects that care about it (its owner, the services that list a stream). A
// relist reports what changed while the watch was away: new objects as added, changed ones as
// modified, vanished ones as deleted with their last known state.
//
// Read-your-writes: the API server's watch can lag a write its caller already has the answer
// to. Observe(answer) keeps that answer, and Get returns it instead of the cached object until
// the cache holds that version or a later one. Manager's client does this for every write, so
// a reconcile queued by its own patch never reads the state before that patch.
//
// Thread-safe. Handlers run on the informer's thread and must not block.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kube_client.h"
#include "sidelog/metrics.h"

namespace sidelog::op {

struct ObjectEvent {
  enum class Type { kAdded, kModified, kDeleted };
  Type type;
  std::shared_ptr<const Json> old_object;  // kModified: the state before; otherwise null
  std::shared_ptr<const Json> object;      // the new state; kDeleted: the last known state
};

// True when an update changes more than status: metadata.generation (the spec), labels,
// annotations, finalizers, owner references or deletionTimestamp. Status-only updates (the
// operator's own status patches, live counters) are not worth a reconcile.
bool ChangesMoreThanStatus(const ObjectEvent& event);

class Informer {
 public:
  using Handler = std::function<void(const ObjectEvent& event)>;

  // Watches `type` in namespace `ns` (every namespace when empty) that `selector` selects.
  // `metrics` may be null.
  Informer(KubeApi* client, ResourceType type, std::string ns, Selector selector, Metrics* metrics);
  ~Informer();

  void AddHandler(Handler fn);  // before Start
  void Start();
  // Joins the informer's thread. A watch waits in a read until the server speaks, so shut
  // the client down first (KubeApi::Shutdown) for a prompt stop.
  void Stop();

  // True once the first list has filled the cache.
  bool HasSynced() const { return synced_; }
  // Blocks until synced or `timeout`; false on timeout or Stop.
  bool WaitForSync(std::chrono::milliseconds timeout);

  // The object ("namespace/name"), or null: the cached version, or the answer to our own
  // later write (see Observe). The object is immutable: copy it to change it.
  std::shared_ptr<const Json> Get(const std::string& key) const;
  std::vector<std::string> Keys() const;
  // The cached objects of namespace `ns` (every namespace when empty), by name.
  std::vector<std::shared_ptr<const Json>> List(const std::string& ns) const;
  // Records the API server's answer to a write of one of this informer's objects.
  void Observe(const Json& written);

  const ResourceType& type() const { return type_; }
  const Selector& selector() const { return selector_; }
  // The namespace watched (empty: every namespace).
  const std::string& ns() const { return ns_; }

 private:
  void Run();
  void RunLoop();
  Status ListAll(std::string* resource_version);
  Status WatchFrom(std::string* resource_version);
  void Notify(const ObjectEvent& event);
  bool Sleep(std::chrono::milliseconds d);  // false when stopped
  // Drops the observed write of `key` once `cached` is as new (call with mu_ held).
  void ForgetObservedLocked(const std::string& key, const Json* cached) const;

  KubeApi* client_;
  const ResourceType type_;
  const std::string ns_;
  const Selector selector_;
  Metrics* metrics_;
  std::vector<Handler> handlers_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<const Json>> cache_;
  mutable std::map<std::string, std::shared_ptr<const Json>> observed_;  // our later writes
  std::atomic<bool> synced_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace sidelog::op
