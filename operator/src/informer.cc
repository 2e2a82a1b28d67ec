#include "informer.h"

#include <random>

#include "sidelog/log.h"

namespace sidelog::op {
namespace {

constexpr std::chrono::milliseconds kMinBackoff{200};
constexpr std::chrono::milliseconds kMaxBackoff{30000};

// Server-side watch timeouts are spread over 5 to 10 minutes, as client-go does, so that many
// watches do not all reconnect at once.
int WatchTimeoutSeconds() {
  static thread_local std::mt19937 rng{std::random_device{}()};
  return std::uniform_int_distribution<int>(300, 600)(rng);
}

}  // namespace

bool ChangesMoreThanStatus(const ObjectEvent& event) {
  if (event.type != ObjectEvent::Type::kModified || !event.old_object) return true;
  const Json& a = (*event.old_object)["metadata"];
  const Json& b = (*event.object)["metadata"];
  for (const char* field : {"generation", "labels", "annotations", "finalizers", "ownerReferences",
                            "deletionTimestamp", "uid"}) {
    const bool ha = a.contains(field), hb = b.contains(field);
    if (ha != hb || (ha && a[field] != b[field])) return true;
  }
  // Objects without a generation (core kinds such as ConfigMap): any change of their content.
  if (!b.contains("generation")) {
    Json x = *event.old_object, y = *event.object;
    x.erase("status");
    y.erase("status");
    x["metadata"].erase("resourceVersion");
    y["metadata"].erase("resourceVersion");
    x["metadata"].erase("managedFields");
    y["metadata"].erase("managedFields");
    return x != y;
  }
  return false;
}

Informer::Informer(KubeApi* client, ResourceType type, std::string ns, Selector selector,
                   Metrics* metrics)
    : client_(client),
      type_(std::move(type)),
      ns_(std::move(ns)),
      selector_(std::move(selector)),
      metrics_(metrics) {}

Informer::~Informer() { Stop(); }

void Informer::AddHandler(Handler fn) { handlers_.push_back(std::move(fn)); }

void Informer::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Informer::Stop() {
  stop_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Informer::WaitForSync(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return synced_.load() || stop_.load(); }) && synced_;
}

void Informer::ForgetObservedLocked(const std::string& key, const Json* cached) const {
  auto it = observed_.find(key);
  if (it == observed_.end()) return;
  const Json& mine = *it->second;
  const uint64_t rv_mine = ResourceVersionOf(mine);
  const uint64_t rv_cached = cached ? ResourceVersionOf(*cached) : 0;
  if (!cached || rv_mine == 0 || rv_cached == 0 || rv_cached >= rv_mine ||
      mine["metadata"].value("uid", "") != (*cached)["metadata"].value("uid", "")) {
    observed_.erase(it);  // the cache has caught up, or the object was replaced or deleted
  }
}

std::shared_ptr<const Json> Informer::Get(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(key);
  std::shared_ptr<const Json> cached = it == cache_.end() ? nullptr : it->second;
  ForgetObservedLocked(key, cached.get());
  auto mine = observed_.find(key);
  return mine == observed_.end() ? cached : mine->second;
}

std::vector<std::string> Informer::Keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> keys;
  keys.reserve(cache_.size());
  for (const auto& [k, v] : cache_) keys.push_back(k);
  return keys;
}

std::vector<std::shared_ptr<const Json>> Informer::List(const std::string& ns) const {
  std::vector<std::string> keys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Keys sort by namespace first: the namespace's objects are one range.
    auto it = ns.empty() ? cache_.begin() : cache_.lower_bound(ns + "/");
    for (; it != cache_.end(); ++it) {
      if (!ns.empty() && it->first.compare(0, ns.size() + 1, ns + "/") != 0) break;
      keys.push_back(it->first);
    }
  }
  std::vector<std::shared_ptr<const Json>> out;
  out.reserve(keys.size());
  for (const auto& k : keys) {
    if (auto o = Get(k)) out.push_back(std::move(o));
  }
  return out;
}

void Informer::Observe(const Json& written) {
  if (!written.is_object() || !written.contains("metadata")) return;
  std::lock_guard<std::mutex> lock(mu_);
  std::string key = ObjectKey(written);
  auto it = cache_.find(key);
  if (it != cache_.end() && ResourceVersionOf(*it->second) >= ResourceVersionOf(written)) return;
  Json copy = written;
  copy["metadata"].erase("managedFields");
  observed_[key] = std::make_shared<const Json>(std::move(copy));
}

void Informer::Notify(const ObjectEvent& event) {
  for (const auto& h : handlers_) h(event);
}

bool Informer::Sleep(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, d, [this] { return stop_.load(); });
  return !stop_;
}

Status Informer::ListAll(std::string* resource_version) {
  std::map<std::string, std::shared_ptr<const Json>> fresh;
  ListOptions options;
  options.selector = selector_;
  do {
    auto page = client_->List(type_, ns_, options);
    if (!page.ok()) return page.status();
    for (auto& item : (*page)["items"]) {
      // List items carry no kind; add it so that every cached object looks the same.
      item["apiVersion"] = type_.ApiVersion();
      item["kind"] = type_.kind;
      item["metadata"].erase("managedFields");  // bulky, and no reconciler reads them
      std::string key = ObjectKey(item);        // before the move below
      fresh[key] = std::make_shared<const Json>(std::move(item));
    }
    const Json& meta = (*page)["metadata"];
    options.continue_token = meta.value("continue", "");
    // A paged list is consistent at the first page's version.
    if (resource_version->empty() || options.continue_token.empty())
      *resource_version = meta.value("resourceVersion", "");
  } while (!options.continue_token.empty() && !stop_);

  std::vector<ObjectEvent> changes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [k, v] : cache_) {
      if (!fresh.count(k)) changes.push_back({ObjectEvent::Type::kDeleted, nullptr, v});
    }
    for (const auto& [k, v] : fresh) {
      auto old = cache_.find(k);
      if (old == cache_.end()) {
        changes.push_back({ObjectEvent::Type::kAdded, nullptr, v});
      } else if ((*old->second)["metadata"].value("resourceVersion", "") !=
                 (*v)["metadata"].value("resourceVersion", "")) {
        changes.push_back({ObjectEvent::Type::kModified, old->second, v});
      }
    }
    cache_ = std::move(fresh);
    for (auto it = observed_.begin(); it != observed_.end();) {
      auto next = std::next(it);
      auto c = cache_.find(it->first);
      ForgetObservedLocked(it->first, c == cache_.end() ? nullptr : c->second.get());
      it = next;
    }
    synced_ = true;
  }
  cv_.notify_all();
  for (const auto& e : changes) Notify(e);
  return Status::Ok();
}

Status Informer::WatchFrom(std::string* resource_version) {
  WatchOptions options;
  options.selector = selector_;
  options.resource_version = *resource_version;
  options.timeout_seconds = WatchTimeoutSeconds();
  return client_->Watch(type_, ns_, options, [&](WatchEvent& ev) {
    if (stop_) return false;
    const Json& meta = ev.object["metadata"];
    std::string rv = meta.value("resourceVersion", "");
    if (ev.type == "BOOKMARK") {
      if (!rv.empty()) *resource_version = rv;
      return true;
    }
    std::string key = ObjectKey(ev.object);
    ev.object["metadata"].erase("managedFields");
    ObjectEvent event{ObjectEvent::Type::kAdded, nullptr, nullptr};
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto old = cache_.find(key);
      if (ev.type == "DELETED") {
        event.type = ObjectEvent::Type::kDeleted;
        event.object =
            old != cache_.end() ? old->second : std::make_shared<const Json>(std::move(ev.object));
        if (old != cache_.end()) cache_.erase(old);
        observed_.erase(key);
      } else {
        auto object = std::make_shared<const Json>(std::move(ev.object));
        if (old != cache_.end()) {
          event.type = ObjectEvent::Type::kModified;
          event.old_object = old->second;
          old->second = object;
        } else {
          cache_[key] = object;
        }
        event.object = object;
        ForgetObservedLocked(key, object.get());
      }
    }
    if (!rv.empty()) *resource_version = rv;
    Notify(event);
    return true;
  });
}

void Informer::Run() {
  try {
    RunLoop();
  } catch (const std::exception& e) {
    // An object the cache cannot hold (no metadata) is a bug here, not a reason to die silently.
    log::Error("informer stopped by an error", {{"kind", type_.kind}, {"error", e.what()}});
    std::abort();
  }
}

void Informer::RunLoop() {
  const Labels labels = {{"kind", type_.kind}};
  auto backoff = kMinBackoff;
  std::string rv;
  bool need_list = true;
  while (!stop_) {
    if (need_list) {
      rv.clear();
      if (auto s = ListAll(&rv); !s.ok()) {
        log::Warn("list failed; retrying",
                  {{"kind", type_.kind}, {"error", s.message()}, {"retryInMs", backoff.count()}});
        if (!Sleep(backoff)) return;
        backoff = std::min(backoff * 2, kMaxBackoff);
        continue;
      }
      need_list = false;
      backoff = kMinBackoff;
    }
    auto started = std::chrono::steady_clock::now();
    Status s = WatchFrom(&rv);
    if (stop_) return;
    if (metrics_) {
      metrics_
          ->GetCounter("sidelog_operator_watch_restarts_total",
                       "Watches that ended and were started again, by kind.", labels)
          .Inc();
    }
    if (s.ok()) {
      backoff = kMinBackoff;  // the server ended the watch on schedule: resume at once
      continue;
    }
    if (s.code() == Status::Code::kGone) {
      log::Info("watch expired; relisting", {{"kind", type_.kind}, {"resourceVersion", rv}});
      need_list = true;
      continue;
    }
    // A watch that ran a while before failing starts its backoff afresh.
    if (std::chrono::steady_clock::now() - started > std::chrono::seconds(30))
      backoff = kMinBackoff;
    log::Warn("watch failed; reconnecting",
              {{"kind", type_.kind}, {"error", s.message()}, {"retryInMs", backoff.count()}});
    if (!Sleep(backoff)) return;
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

}  // namespace sidelog::op
