#include "eventservice_reconciler.h"

#include <algorithm>
#include <set>

#include "eventstream_reconciler.h"
#include "sidecar_injector.h"
#include "sidelog/config.h"
#include "sidelog/log.h"

namespace sidelog::op {

const ResourceType kConfigMaps{"", "v1", "configmaps", "ConfigMap", true};
const ResourceType kPods{"", "v1", "pods", "Pod", true};

Selector InjectedPodSelector() { return {std::string(kInjectLabel) + "=true", ""}; }

namespace {

std::vector<Json> Objects(const std::vector<std::shared_ptr<const Json>>& list) {
  std::vector<Json> out;
  out.reserve(list.size());
  for (const auto& o : list) out.push_back(*o);
  return out;
}

// The CRD's bound on status.dependencies and status.dependents.
constexpr size_t kMaxListedServices = 256;

Json DependencyList(const std::vector<Dependency>& deps) {
  Json out = Json::array();
  for (const auto& d : deps) {
    if (out.size() == kMaxListedServices) break;
    out.push_back({{"service", d.service}, {"streams", d.streams}});
  }
  return out;
}

// The streams an EventService names, produced first, each in spec order.
std::vector<std::string> ListedStreams(const Json& spec) {
  std::vector<std::string> out;
  for (const auto& p : spec.value("produces", Json::array())) out.push_back(p.get<std::string>());
  for (const auto& c : spec.value("consumes", Json::array())) out.push_back(c.value("stream", ""));
  return out;
}

}  // namespace

struct EventServiceReconciler::Resolved {
  Condition dependencies;  // DependenciesResolved
  std::vector<RenderedStream> streams;
  std::vector<std::string> left_out;  // listed but not rendered
  std::vector<std::string> cycles;    // as text, when reported
  const ServiceResolution* resolution = nullptr;
  std::string config_map;
  std::string hash;
  std::string invalid;  // why the rendered config would not load in the sidecar
};

EventServiceReconciler::EventServiceReconciler(KubeApi* client, Informer* services,
                                               Informer* streams, Informer* config_maps,
                                               Informer* pods, EventRecorder* recorder,
                                               EventServiceOptions options)
    : client_(client),
      services_(services),
      streams_(streams),
      config_maps_(config_maps),
      pods_(pods),
      recorder_(recorder),
      options_(std::move(options)) {}

void EventServiceReconciler::WatchDependencies(Controller* controller) {
  // Services of a namespace that list stream `name`.
  auto listing = [this](const std::string& ns, const std::string& name) {
    std::vector<std::string> keys;
    for (const auto& s : services_->List(ns)) {
      const auto listed = ListedStreams(s->value("spec", Json::object()));
      if (std::find(listed.begin(), listed.end(), name) != listed.end())
        keys.push_back(ObjectKey(*s));
    }
    return keys;
  };
  // A stream appears, goes, or changes its spec (rules, producerPolicy): every service that
  // lists it. Its live counters (status) are not a reason.
  controller->Watches(streams_, [listing](const ObjectEvent& e) {
    if (!ChangesMoreThanStatus(e)) return std::vector<std::string>{};
    const Json& m = (*e.object)["metadata"];
    return listing(m.value("namespace", ""), m.value("name", ""));
  });
  // A service appears, goes or changes what it lists: the others whose resolution may change
  // with it. Those that list a stream it lists (before or after the change: dependencies,
  // dependents, conflicts), and those on a cycle through it (before: their status.cycles name
  // it; after: the namespace's graph finds them).
  controller->Watches(services_, [this](const ObjectEvent& e) {
    std::set<std::string> keys;
    if (!ChangesMoreThanStatus(e)) return std::vector<std::string>{};
    const Json& meta = (*e.object)["metadata"];
    const std::string ns = meta.value("namespace", "");
    const std::string self = meta.value("name", "");
    std::set<std::string> streams;
    for (const auto* o : {e.old_object.get(), e.object.get()}) {
      if (!o) continue;
      for (auto& s : ListedStreams(o->value("spec", Json::object()))) streams.insert(std::move(s));
    }
    const auto services = services_->List(ns);
    for (const auto& s : services) {
      const std::string name = (*s)["metadata"].value("name", "");
      if (name == self) continue;
      bool shares = false;
      for (const auto& l : ListedStreams(s->value("spec", Json::object())))
        shares = shares || streams.count(l) > 0;
      // "a -> b -> a": the names between the arrows.
      for (const auto& c : s->value("status", Json::object()).value("cycles", Json::array())) {
        const std::string text = " " + c.get<std::string>() + " ";
        shares = shares || text.find(" " + self + " ") != std::string::npos;
      }
      if (shares) keys.insert(ns + "/" + name);
    }
    if (e.type != ObjectEvent::Type::kDeleted) {
      const DependencyGraph graph =
          DependencyGraph::FromObjects(Objects(streams_->List(ns)), Objects(services));
      if (const ServiceResolution* r = graph.Find(self)) {
        for (const auto& cycle : r->cycles)
          for (const auto& member : cycle)
            if (member != self) keys.insert(ns + "/" + member);
      }
    }
    return std::vector<std::string>(keys.begin(), keys.end());
  });
  // Its ConfigMap is edited or deleted: the owner renders it again.
  controller->Watches(config_maps_, [](const ObjectEvent& e) {
    std::vector<std::string> keys;
    const Json& m = (*e.object)["metadata"];
    for (const auto& ref : m.value("ownerReferences", Json::array())) {
      if (ref.value("kind", "") == "EventService" && ref.value("controller", false))
        keys.push_back(m.value("namespace", "") + "/" + ref.value("name", ""));
    }
    return keys;
  });
  // A pod of the service starts, stops or goes: its count. Pod status changes count here.
  if (pods_) {
    controller->Watches(pods_, [](const ObjectEvent& e) {
      const Json& m = (*e.object)["metadata"];
      const std::string service =
          m.value("labels", Json::object()).value(kServiceLabel, std::string());
      if (service.empty()) return std::vector<std::string>{};
      return std::vector<std::string>{m.value("namespace", "") + "/" + service};
    });
  }
}

int64_t EventServiceReconciler::InjectedPods(const std::string& ns,
                                             const std::string& service) const {
  int64_t n = 0;
  for (const auto& pod : pods_->List(ns)) {
    const Json& m = (*pod)["metadata"];
    if (m.value("labels", Json::object()).value(kServiceLabel, std::string()) != service ||
        !m.value("annotations", Json::object()).contains(kInjectedAnnotation) ||
        m.contains("deletionTimestamp") ||
        pod->value("/status/phase"_json_pointer, std::string()) != "Running") {
      continue;
    }
    ++n;
  }
  return n;
}

EventServiceReconciler::Resolved EventServiceReconciler::Resolve(
    const Json& service, const DependencyGraph& graph) const {
  const Json& meta = service["metadata"];
  const std::string ns = meta.value("namespace", "");
  const std::string name = meta.value("name", "");
  const Json spec = service.value("spec", Json::object());
  Resolved r;
  r.dependencies.type = "DependenciesResolved";
  r.dependencies.observed_generation = meta.value("generation", int64_t{0});
  r.resolution = graph.Find(name);
  static const ServiceResolution kNone;
  const ServiceResolution& res = r.resolution ? *r.resolution : kNone;

  std::set<std::string> unresolved(res.missing_streams.begin(), res.missing_streams.end());
  for (const auto& c : res.conflicts) unresolved.insert(c.stream);
  auto rendered = [&](const std::string& stream, bool write, std::vector<std::string> types) {
    if (unresolved.count(stream)) {
      r.left_out.push_back(stream);
      return;
    }
    auto es = streams_->Get(ns + "/" + stream);
    RenderedStream s{stream, write, std::move(types), Json::object(), Json()};
    if (es) s.entity = (*es).value("spec", Json::object()).value("entity", Json::object());
    r.streams.push_back(std::move(s));
  };
  for (const auto& p : spec.value("produces", Json::array()))
    rendered(p.get<std::string>(), true, {});
  for (const auto& c : spec.value("consumes", Json::array())) {
    rendered(c.value("stream", ""), false,
             c.value("types", Json::array()).get<std::vector<std::string>>());
    if (c.contains("deliver") && !r.streams.empty() && r.streams.back().name == c["stream"]) {
      r.streams.back().deliver = c["deliver"];
    }
  }

  std::vector<std::string> problems;
  std::string reason;
  if (!res.missing_streams.empty()) {
    reason = "StreamNotFound";
    problems.push_back("no EventStream " + Join(res.missing_streams) + " in namespace " + ns);
  }
  for (const auto& c : res.conflicts) {
    if (reason.empty()) reason = "ProducerConflict";
    problems.push_back("stream " + c.stream +
                       " has producerPolicy Single and is produced by EventService " + c.owner +
                       ", which was there first");
  }
  if (options_.cycles != CyclePolicy::kAllow) {
    for (const auto& c : res.cycles) r.cycles.push_back(DependencyGraph::CycleText(c));
  }
  if (options_.cycles == CyclePolicy::kDeny && !r.cycles.empty()) {
    if (reason.empty()) reason = "CycleDetected";
    problems.push_back("dependency cycle " + Join(r.cycles, "; ") +
                       " (the operator runs with --dependency-cycles=deny)");
  }
  if (reason.empty()) {
    r.dependencies.status = "True";
    r.dependencies.reason = "Resolved";
    std::vector<std::string> deps;
    for (const auto& d : res.dependencies) deps.push_back(d.service);
    r.dependencies.message =
        "every listed stream exists; " +
        (deps.empty() ? std::string("depends on no other service") : "depends on " + Join(deps));
    if (!r.cycles.empty()) {
      r.dependencies.message +=
          "; dependency cycle " + Join(r.cycles, "; ") +
          " (allowed, --dependency-cycles=" + CyclePolicyName(options_.cycles) + ")";
    }
  } else {
    r.dependencies.status = "False";
    r.dependencies.reason = reason;
    r.dependencies.message = Join(problems, "; ");
    if (!r.left_out.empty())
      r.dependencies.message += "; the sidecar config leaves out " + Join(r.left_out);
  }
  return r;
}

Result<ReconcileResult> EventServiceReconciler::Reconcile(const std::string& key) {
  std::string ns, name;
  SplitKey(key, &ns, &name);
  auto cached = services_->Get(key);
  if (!cached || (*cached)["metadata"].contains("deletionTimestamp")) {
    // Its ConfigMap and Secret go with it (owner references); its NATS users must go now.
    if (options_.identities) {
      if (auto s = options_.identities->Forget("EventService", ns, name); !s.ok()) return s;
    }
    return ReconcileResult{};
  }
  const Json& service = *cached;

  const DependencyGraph graph =
      DependencyGraph::FromObjects(Objects(streams_->List(ns)), Objects(services_->List(ns)));
  Resolved r = Resolve(service, graph);
  const std::string yaml = RenderSidecarConfig(service, r.streams, options_.sidecar);
  // The API server checked the schema; the sidecar's own loader has the last word (such as a
  // delivery without a port), and a config it refuses must not reach the pods.
  if (auto parsed = ParseSidecarConfig(yaml, "the rendered sidecar config");
      !r.streams.empty() && !parsed.ok()) {
    // "<origin>:14: streams[0].deliver.timeout: ..." names the rendered file; say it in the
    // EventService's words.
    std::string why = parsed.status().message();
    if (auto at = why.find(": streams["); at != std::string::npos) {
      const size_t close = why.find(']', at);
      const size_t index = std::strtoul(why.c_str() + at + 10, nullptr, 10);
      if (close != std::string::npos && index < r.streams.size()) {
        why = "stream " + r.streams[index].name + ": " + why.substr(close + 2);
      }
    }
    r.invalid = "the sidecar would refuse this config: " + why;
    if (auto w = WriteStatus(service, r); !w.ok()) return w;
    return ReconcileResult{};
  }
  const Json config_map = SidecarConfigMap(service, yaml);
  r.config_map = config_map["metadata"]["name"];
  r.hash = config_map["metadata"]["annotations"][kConfigHashAnnotation];
  if (Status s = ApplyConfigMap(config_map); !s.ok()) {
    r.config_map.clear();
    (void)WriteStatus(service, r);  // Ready=False says so; the error retries the key
    return s;
  }
  if (options_.identities) {
    NatsIdentities::Grant grant;
    for (const auto& s : r.streams) (s.write ? grant.writes : grant.reads).push_back(s.name);
    Json owner = service;
    owner["kind"] = "EventService";
    if (Status s = options_.identities->Ensure(owner, grant); !s.ok()) return s;
  }
  if (auto w = WriteStatus(service, r); !w.ok()) return w;
  return ReconcileResult{};
}

Status EventServiceReconciler::ApplyConfigMap(const Json& config_map) {
  const Json& want = config_map["metadata"];
  if (auto have = config_maps_->Get(ObjectKey(config_map))) {
    const Json& m = (*have)["metadata"];
    bool same = (*have).value("data", Json::object()) == config_map["data"] &&
                m.value("annotations", Json::object()).value(kConfigHashAnnotation, "") ==
                    want["annotations"][kConfigHashAnnotation];
    for (const auto& [k, v] : want["labels"].items()) {
      same = same && m.value("labels", Json::object()).value(k, "") == v;
    }
    const std::string uid = want["ownerReferences"][0].value("uid", "");
    bool owned = false;
    for (const auto& ref : m.value("ownerReferences", Json::array())) {
      owned = owned || (ref.value("uid", "") == uid && ref.value("controller", false));
    }
    if (same && owned) return Status::Ok();
  }
  return client_->Apply(kConfigMaps, config_map).status();
}

Status EventServiceReconciler::WriteStatus(const Json& service, const Resolved& r) {
  const Json before = service.value("status", Json::object());
  const Json prev_conditions = before.value("conditions", Json::array());
  Json status = before;
  Json conditions = prev_conditions;
  const int64_t generation = r.dependencies.observed_generation;

  Condition ready{"Ready", "True", "ConfigRendered", "", generation};
  if (!r.invalid.empty()) {
    ready = {"Ready", "False", "InvalidSpec", r.invalid, generation};
  } else if (r.config_map.empty()) {
    ready = {"Ready", "False", "ConfigNotRendered",
             "the sidecar config could not be written; retrying", generation};
  } else if (r.dependencies.status != "True") {
    ready.status = "False";
    ready.reason = r.dependencies.reason;
    ready.message = r.dependencies.message;
  } else {
    ready.message = "sidecar config rendered into ConfigMap " + r.config_map + " (" +
                    std::to_string(r.streams.size()) + " streams)";
  }
  const Json* prev_deps = FindCondition(prev_conditions, r.dependencies.type);
  const bool transition = !prev_deps || prev_deps->value("status", "") != r.dependencies.status ||
                          prev_deps->value("reason", "") != r.dependencies.reason;
  SetCondition(&conditions, r.dependencies);
  SetCondition(&conditions, ready);
  status["conditions"] = conditions;
  status["observedGeneration"] = generation;
  if (r.resolution) {
    status["dependencies"] = DependencyList(r.resolution->dependencies);
    status["dependents"] = DependencyList(r.resolution->dependents);
  }
  const Json prev_cycles = before.value("cycles", Json::array());
  if (r.cycles.empty()) {
    status.erase("cycles");
  } else {
    status["cycles"] = r.cycles;
  }
  if (!r.config_map.empty())
    status["sidecarConfig"] = {{"configMap", r.config_map}, {"hash", r.hash}};
  if (pods_) {
    const Json& m = service["metadata"];
    status["injectedPods"] = InjectedPods(m.value("namespace", ""), m.value("name", ""));
  }
  if (status == before) return Status::Ok();

  // A merge patch replaces lists whole, and null removes a field.
  Json patch = status;
  if (r.cycles.empty() && before.contains("cycles")) patch["cycles"] = nullptr;
  const Json& meta = service["metadata"];
  auto w = client_->MergePatch(services_->type(), meta.value("namespace", ""),
                               meta.value("name", ""), {{"status", patch}}, "status");
  if (!w.ok()) return w.status();
  if (transition) {
    recorder_->Record(service, r.dependencies.status == "True" ? "Normal" : "Warning",
                      r.dependencies.reason, r.dependencies.message);
    log::Info(std::string("EventService dependencies ") +
                  (r.dependencies.status == "True" ? "resolved" : "not resolved"),
              {{"eventService", ObjectKey(service)},
               {"reason", r.dependencies.reason},
               {"message", r.dependencies.message}});
  }
  if (!r.cycles.empty() && Json(r.cycles) != prev_cycles && options_.cycles == CyclePolicy::kWarn) {
    recorder_->Record(service, "Warning", "DependencyCycle",
                      "dependency cycle " + Join(r.cycles, "; ") +
                          " (allowed; the operator runs with --dependency-cycles=warn)");
  }
  return Status::Ok();
}

}  // namespace sidelog::op
