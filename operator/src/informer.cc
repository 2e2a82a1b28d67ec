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

Informer::Informer(KubeClient* client, ResourceType type, std::string ns, Metrics* metrics)
    : client_(client), type_(std::move(type)), ns_(std::move(ns)), metrics_(metrics) {}

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

std::shared_ptr<const Json> Informer::Get(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(key);
  return it == cache_.end() ? nullptr : it->second;
}

std::vector<std::string> Informer::Keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> keys;
  keys.reserve(cache_.size());
  for (const auto& [k, v] : cache_) keys.push_back(k);
  return keys;
}

void Informer::Notify(const std::string& key) {
  for (const auto& h : handlers_) h(key);
}

bool Informer::Sleep(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, d, [this] { return stop_.load(); });
  return !stop_;
}

Status Informer::ListAll(std::string* resource_version) {
  std::map<std::string, std::shared_ptr<const Json>> fresh;
  std::string cont;
  do {
    auto page = client_->List(type_, ns_, 500, cont);
    if (!page.ok()) return page.status();
    for (auto& item : (*page)["items"]) {
      // List items carry no kind; add it so that every cached object looks the same.
      item["apiVersion"] = type_.ApiVersion();
      item["kind"] = type_.kind;
      std::string key = ObjectKey(item);  // before the move below
      fresh[key] = std::make_shared<const Json>(std::move(item));
    }
    const Json& meta = (*page)["metadata"];
    cont = meta.value("continue", "");
    // A paged list is consistent at the first page's version.
    if (resource_version->empty() || cont.empty())
      *resource_version = meta.value("resourceVersion", "");
  } while (!cont.empty() && !stop_);

  std::vector<std::string> changed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [k, v] : cache_) {
      if (!fresh.count(k)) changed.push_back(k);  // deleted while we were not watching
    }
    for (const auto& [k, v] : fresh) changed.push_back(k);
    cache_ = std::move(fresh);
    synced_ = true;
  }
  cv_.notify_all();
  for (const auto& k : changed) Notify(k);
  return Status::Ok();
}

Status Informer::WatchFrom(std::string* resource_version) {
  return client_->Watch(type_, ns_, *resource_version, WatchTimeoutSeconds(), [&](WatchEvent& ev) {
    if (stop_) return false;
    const Json& meta = ev.object["metadata"];
    std::string rv = meta.value("resourceVersion", "");
    if (ev.type == "BOOKMARK") {
      if (!rv.empty()) *resource_version = rv;
      return true;
    }
    std::string key = ObjectKey(ev.object);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (ev.type == "DELETED") {
        cache_.erase(key);
      } else {
        cache_[key] = std::make_shared<const Json>(std::move(ev.object));
      }
    }
    if (!rv.empty()) *resource_version = rv;
    Notify(key);
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
