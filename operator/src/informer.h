// Informer: a shared, always-current cache of one kind of object, kept by list + watch.
//
// It lists (in pages), then watches from the list's resourceVersion with bookmarks, so a
// reconnect resumes where it stopped; a 410 Gone (the version fell out of etcd's window) makes
// it relist. Connection failures retry with exponential backoff (200 ms to 30 s). Every change
// (added, modified, deleted, and every object at a relist) is reported to the handlers by key,
// "namespace/name": handlers enqueue keys, reconcilers read the cache.
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

class Informer {
 public:
  using Handler = std::function<void(const std::string& key)>;

  // Watches `type` in namespace `ns` (every namespace when empty). `metrics` may be null.
  Informer(KubeClient* client, ResourceType type, std::string ns, Metrics* metrics);
  ~Informer();

  void AddHandler(Handler fn);  // before Start
  void Start();
  // Joins the informer's thread. A watch waits in a read until the server speaks, so shut
  // the client down first (KubeClient::Shutdown) for a prompt stop.
  void Stop();

  // True once the first list has filled the cache.
  bool HasSynced() const { return synced_; }
  // Blocks until synced or `timeout`; false on timeout or Stop.
  bool WaitForSync(std::chrono::milliseconds timeout);

  // The cached object, or null. The object is immutable: copy it to change it.
  std::shared_ptr<const Json> Get(const std::string& key) const;
  std::vector<std::string> Keys() const;
  const ResourceType& type() const { return type_; }

 private:
  void Run();
  void RunLoop();
  Status ListAll(std::string* resource_version);
  Status WatchFrom(std::string* resource_version);
  void Notify(const std::string& key);
  bool Sleep(std::chrono::milliseconds d);  // false when stopped

  KubeClient* client_;
  const ResourceType type_;
  const std::string ns_;
  Metrics* metrics_;
  std::vector<Handler> handlers_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<const Json>> cache_;
  std::atomic<bool> synced_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace sidelog::op
