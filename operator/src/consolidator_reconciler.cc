#include "consolidator_reconciler.h"

#include <cpprest/http_client.h>

#include <regex>

#include "check.h"
#include "config.h"
#include "eventservice_reconciler.h"
#include "sidecar_config.h"
#include "sidelog/log.h"
#include "sidelog/yaml.h"

namespace sidelog::op {

const ResourceType kConsolidators{"sidelog.dev", "v1alpha1", "consolidators", "Consolidator", true};
const ResourceType kStatefulSets{"apps", "v1", "statefulsets", "StatefulSet", true};
const ResourceType kDeployments{"apps", "v1", "deployments", "Deployment", true};
const ResourceType kServices{"", "v1", "services", "Service", true};

Selector ConsolidatorObjectSelector() { return {kConsolidatorLabel, ""}; }

namespace {

constexpr const char* kRenderedAnnotation = "sidelog.dev/rendered-hash";

bool Running(const std::string& state) {
  return state == "requested" || state == "building" || state == "swapping";
}

std::string Now() { return FormatTime(NowMicros() / 1000000 * 1000000).substr(0, 19) + "Z"; }

// GET or POST on a consolidator's API, with a short timeout: reconciles must not hang on it.
Result<Json> CallApi(const std::string& base, const std::string& method, const std::string& path,
                     int* code) {
  try {
    web::http::client::http_client_config cfg;
    cfg.set_timeout(std::chrono::seconds(2));
    web::http::client::http_client client(base, cfg);
    web::http::http_response resp = client.request(method, path).get();
    *code = resp.status_code();
    resp.headers().set_content_type("application/json");
    const std::string body = resp.extract_utf8string(true).get();
    Json j = Json::parse(body, nullptr, false);
    return j.is_discarded() ? Json(body) : j;
  } catch (const std::exception& e) {
    return Status::Unavailable(method + " " + base + path + ": " + e.what());
  }
}

// "spec:12: handlers[2].sql: the statement does not prepare: ..." as the user wrote it:
// "handlers[2] (orders/OrderPaid): sql: the statement does not prepare: ...".
std::string SpecMessage(const std::string& message, const Json& spec) {
  static const std::regex kOrigin("^spec:[0-9]+: ");
  std::string m = std::regex_replace(message, kOrigin, "");
  static const std::regex kHandler("^handlers\\[([0-9]+)\\]\\.?");
  std::smatch match;
  if (std::regex_search(m, match, kHandler)) {
    const size_t i = std::stoul(match[1].str());
    const Json handlers = spec.value("handlers", Json::array());
    std::string event = i < handlers.size() ? handlers[i].value("event", "") : "";
    m = "handlers[" + match[1].str() + "] (" + event + "): " + m.substr(match[0].length());
  }
  return m;
}

// The last `n` characters of a pod's log tail, from the first whole line.
std::string Tail(const std::string& text, size_t n = 600) {
  if (text.size() <= n) return text;
  std::string t = text.substr(text.size() - n);
  if (auto nl = t.find('\n'); nl != std::string::npos) t = t.substr(nl + 1);
  return t;
}

// The value at JSON pointer `pointer`, or null when a part of the path is absent.
Json At(const Json& object, const std::string& pointer) {
  const Json::json_pointer p(pointer);
  return object.contains(p) ? object.at(p) : Json();
}

bool ControlledBy(const Json& object, const std::string& uid) {
  for (const auto& ref : object["metadata"].value("ownerReferences", Json::array())) {
    if (ref.value("uid", "") == uid && ref.value("controller", false)) return true;
  }
  return false;
}

}  // namespace

struct ConsolidatorReconciler::Observed {
  std::string workload;  // "StatefulSet order-summary"
  int64_t want = 1, ready = 0;
  bool rolled_out = false;  // every pod runs the current template
  std::string pod_problem;  // why a pod does not run: "" when none is known
  bool api = false;         // /v1/status answered
  Json api_status = Json::object();
  std::string api_error;
  std::string api_url;
};

ConsolidatorReconciler::ConsolidatorReconciler(KubeApi* client, Informer* consolidators,
                                               Informer* config_maps, Informer* stateful_sets,
                                               Informer* deployments, Informer* services,
                                               Informer* pods, EventRecorder* recorder,
                                               ConsolidatorOptions options)
    : client_(client),
      consolidators_(consolidators),
      config_maps_(config_maps),
      stateful_sets_(stateful_sets),
      deployments_(deployments),
      services_(services),
      pods_(pods),
      recorder_(recorder),
      options_(std::move(options)) {}

void ConsolidatorReconciler::WatchOwned(Controller* controller) {
  auto owner = [](const ObjectEvent& e) {
    const Json& m = (*e.object)["metadata"];
    for (const auto& ref : m.value("ownerReferences", Json::array())) {
      if (ref.value("kind", "") == "Consolidator" && ref.value("controller", false))
        return std::vector<std::string>{m.value("namespace", "") + "/" + ref.value("name", "")};
    }
    return std::vector<std::string>{};
  };
  for (Informer* i : {config_maps_, stateful_sets_, deployments_, services_}) {
    controller->Watches(i, owner);
  }
  // Pods are owned by the workload: the label names the Consolidator.
  controller->Watches(pods_, [](const ObjectEvent& e) {
    const Json& m = (*e.object)["metadata"];
    const std::string name =
        m.value("labels", Json::object()).value(kConsolidatorLabel, std::string());
    if (name.empty()) return std::vector<std::string>{};
    return std::vector<std::string>{m.value("namespace", "") + "/" + name};
  });
}

Status ConsolidatorReconciler::Check(const Json& consolidator, const ConsolidatorWorkload& w) {
  const std::string key = ObjectKey(consolidator);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = checked_.find(key);
    if (it != checked_.end() && it->second.first == w.config_hash) return it->second.second;
  }
  const Json spec = consolidator.value("spec", Json::object());
  // The config as the pod reads it; the PostgreSQL connection comes from the pod's env there.
  std::string yaml = w.yaml;
  const std::string env = std::string("connectionEnv: ") + kDatabaseEnv;
  if (auto at = yaml.find(env); at != std::string::npos) {
    yaml.replace(at, env.size(), "connection: \"host=checked.invalid\"");
  }
  Status verdict;
  auto config = consolidator::ParseConsolidatorConfig(yaml, "spec");
  if (!config.ok()) {
    verdict = Status::Invalid(SpecMessage(config.status().message(), spec));
  } else if (config->sqlite) {
    Status st = consolidator::CheckAgainstSqlite(*config, options_.scratch_dir);
    if (st.code() == Status::Code::kInvalid) {
      verdict = Status::Invalid(SpecMessage(st.message(), spec));
    } else if (!st.ok()) {
      return st;  // the scratch file: not the spec's fault; retried, not cached
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  checked_[key] = {w.config_hash, verdict};
  return verdict;
}

Status ConsolidatorReconciler::ApplyOwned(const Json& consolidator, const ResourceType& type,
                                          Informer* cache, Json object) {
  const std::string rendered = Sha256Hex(object.dump());
  object["metadata"]["annotations"][kRenderedAnnotation] = rendered;
  const std::string uid = consolidator["metadata"].value("uid", "");
  if (auto have = cache->Get(ObjectKey(object))) {
    if (!ControlledBy(*have, uid)) {
      return Status::Conflict(type.kind + " " + object["metadata"].value("name", "") +
                              " exists and is not owned by this Consolidator");
    }
    const Json annotations = (*have)["metadata"].value("annotations", Json::object());
    if (annotations.value(kRenderedAnnotation, "") == rendered) return Status::Ok();
  } else if (auto live = client_->Get(type, object["metadata"].value("namespace", ""),
                                      object["metadata"].value("name", ""));
             live.ok() && !ControlledBy(*live, uid)) {
    // Not in the cache (which only holds labelled objects): someone else's.
    return Status::Conflict(type.kind + " " + object["metadata"].value("name", "") +
                            " exists and is not owned by this Consolidator");
  }
  return client_->Apply(type, object).status();
}

ConsolidatorReconciler::Observed ConsolidatorReconciler::Observe(const Json& consolidator,
                                                                 const ConsolidatorWorkload& w) {
  Observed o;
  const Json& meta = consolidator["metadata"];
  const std::string ns = meta.value("namespace", "");
  const std::string name = meta.value("name", "");
  Informer* workloads = w.stateful() ? stateful_sets_ : deployments_;
  o.workload = std::string(w.stateful() ? "StatefulSet " : "Deployment ") + name;
  o.want = w.workload["spec"].value("replicas", 1);
  if (auto have = workloads->Get(ns + "/" + name)) {
    const Json st = have->value("status", Json::object());
    o.ready = st.value("readyReplicas", 0);
    const bool observed = st.value("observedGeneration", int64_t{0}) >=
                          (*have)["metadata"].value("generation", int64_t{0});
    // The cache may not hold the template just applied yet: it must carry this config's hash.
    const bool current_template =
        At(*have, "/spec/template/metadata/annotations/" +
                      EscapePointerToken(kConfigHashAnnotation)) == w.config_hash;
    o.rolled_out =
        current_template && observed && st.value("updatedReplicas", 0) >= o.want &&
        st.value("replicas", 0) == o.want &&
        (!w.stateful() || st.value("currentRevision", "") == st.value("updateRevision", ""));
  }
  for (const auto& pod : pods_->List(ns)) {
    const Json& pm = (*pod)["metadata"];
    if (pm.value("labels", Json::object()).value(kConsolidatorLabel, "") != name) continue;
    const Json ps = pod->value("status", Json::object());
    const std::string pod_name = pm.value("name", "");
    for (const auto& c : ps.value("containerStatuses", Json::array())) {
      const Json waiting = c.value("state", Json::object()).value("waiting", Json::object());
      const Json last = c.value("lastState", Json::object()).value("terminated", Json::object());
      if (!waiting.empty() && waiting.value("reason", "") != "ContainerCreating") {
        o.pod_problem = "pod " + pod_name + ": " + waiting.value("reason", "") +
                        (waiting.contains("message") ? ": " + waiting.value("message", "") : "");
        if (!last.empty() && last.value("exitCode", 0) != 0) {
          o.pod_problem += "; it exited with code " + std::to_string(last.value("exitCode", 0)) +
                           ": " + Tail(last.value("message", ""));
        }
      }
    }
    for (const auto& c : ps.value("conditions", Json::array())) {
      if (o.pod_problem.empty() && c.value("type", "") == "PodScheduled" &&
          c.value("status", "") == "False") {
        o.pod_problem = "pod " + pod_name + " is not scheduled: " + c.value("message", "");
      }
    }
  }
  if (auto svc = services_->Get(ns + "/" + name)) {
    o.api_url = options_.api_url ? options_.api_url(*svc) : "";
    if (!options_.api_url) {
      const std::string ip = (*svc)["spec"].value("clusterIP", "");
      if (!ip.empty() && ip != "None") {
        o.api_url = "http://" + ip + ":" + std::to_string(kConsolidatorPort);
      }
    }
  }
  if (!o.api_url.empty() && o.ready > 0) {
    int code = 0;
    auto st = CallApi(o.api_url, "GET", "/v1/status", &code);
    if (st.ok() && code == 200 && st->is_object()) {
      o.api = true;
      o.api_status = *st;
    } else {
      o.api_error = st.ok() ? "GET " + o.api_url + "/v1/status answered " + std::to_string(code)
                            : st.status().message();
    }
  }
  return o;
}

Result<ReconcileResult> ConsolidatorReconciler::Reconcile(const std::string& key) {
  auto cached = consolidators_->Get(key);
  if (!cached || (*cached)["metadata"].contains("deletionTimestamp")) {
    // What it owns goes with it (owner references); its NATS users must go now.
    if (!cached) {
      std::lock_guard<std::mutex> lock(mu_);
      checked_.erase(key);
    }
    if (options_.identities) {
      std::string ns, name;
      SplitKey(key, &ns, &name);
      if (auto s = options_.identities->Forget("Consolidator", ns, name); !s.ok()) return s;
    }
    return ReconcileResult{};
  }
  const Json& consolidator = *cached;
  const Json& meta = consolidator["metadata"];
  const int64_t generation = meta.value("generation", int64_t{0});
  const Json spec = consolidator.value("spec", Json::object());
  const Json before = consolidator.value("status", Json::object());
  Json status = before;
  Json conditions = before.value("conditions", Json::array());
  const ReconcileResult again{options_.status_period};

  ConsolidatorWorkload w = RenderConsolidator(consolidator, options_.workload);
  Condition ready{"Ready", "False", "", "", generation};
  Status checked = Check(consolidator, w);
  if (!checked.ok() && checked.code() != Status::Code::kInvalid) return checked;
  Status applied;
  if (checked.ok()) {
    // A target of the other kind leaves a workload of the other kind behind.
    const ResourceType& stale = w.stateful() ? kDeployments : kStatefulSets;
    Informer* stale_cache = w.stateful() ? deployments_ : stateful_sets_;
    if (auto old = stale_cache->Get(key); old && ControlledBy(*old, meta.value("uid", ""))) {
      applied = client_->Delete(stale, meta.value("namespace", ""), meta.value("name", ""));
      if (applied.code() == Status::Code::kNotFound) applied = Status::Ok();
    }
    if (applied.ok() && options_.identities) {
      NatsIdentities::Grant grant;
      for (const auto& source : spec.value("sources", Json::array())) {
        if (source.is_object()) grant.reads.push_back(source.value("stream", ""));
      }
      Json owner = consolidator;
      owner["kind"] = "Consolidator";
      applied = options_.identities->Ensure(owner, grant);
    }
    if (applied.ok()) applied = ApplyOwned(consolidator, kConfigMaps, config_maps_, w.config_map);
    if (applied.ok()) {
      applied = ApplyOwned(consolidator, w.stateful() ? kStatefulSets : kDeployments,
                           w.stateful() ? stateful_sets_ : deployments_, w.workload);
    }
    if (applied.ok()) applied = ApplyOwned(consolidator, kServices, services_, w.service);
  }

  Observed o = Observe(consolidator, w);
  const Json api = o.api_status;
  const Json api_rebuild = api.value("rebuild", Json::object());
  const std::string api_state = api_rebuild.value("state", "");

  // A spec change of sources, schema or handlers: the new pods rebuild before they fold.
  Json rebuild = before.value("rebuild", Json::object());
  // The annotation's value last acted on, kept across rebuilds of either reason.
  const std::string acted = rebuild.value("annotation", rebuild.value("reason", "") == "Requested"
                                                            ? rebuild.value("requestedAt", "")
                                                            : std::string());
  const std::string recorded_projection = before.value("projectionHash", "");
  if (checked.ok() && applied.ok() && recorded_projection != w.projection_hash) {
    if (!recorded_projection.empty()) {
      rebuild = {{"requestedAt", Now()},
                 {"reason", "ProjectionChanged"},
                 {"state", "requested"},
                 {"progress", 0}};
      if (!acted.empty()) rebuild["annotation"] = acted;
      recorder_->Record(consolidator, "Normal", "ProjectionChanged",
                        "sources, schema or handlers changed: the new pods rebuild the read model "
                        "before they fold; queries are served from the old one meanwhile");
    }
    status["projectionHash"] = w.projection_hash;
  }
  // A new value of the rebuild annotation asks the running consolidator.
  const std::string asked =
      meta.value("annotations", Json::object()).value(kRebuildAnnotation, std::string());
  std::string rebuild_note;
  const bool ours = rebuild.value("reason", "") == "Requested";
  const bool forgotten = ours && Running(rebuild.value("state", "")) && o.api &&
                         !Running(api_state) && api_rebuild.value("requestedAt", "").empty();
  if (!asked.empty() && (asked != acted || forgotten)) {
    int code = 0;
    auto r = o.api ? CallApi(o.api_url, "POST", "/v1/rebuild", &code)
                   : Result<Json>(Status::Unavailable("the consolidator does not answer yet"));
    if (r.ok() && (code == 202 || code == 409)) {
      rebuild = {{"requestedAt", asked},
                 {"annotation", asked},
                 {"reason", "Requested"},
                 {"state", "requested"},
                 {"progress", 0}};
      if (!forgotten) {
        recorder_->Record(
            consolidator, "Normal", "RebuildRequested",
            "rebuild requested by the annotation " + std::string(kRebuildAnnotation) + "=" + asked);
      }
    } else {
      rebuild_note = "rebuild " + asked + " asked for; waiting for the consolidator: " +
                     (r.ok() ? "it answered " + std::to_string(code) : r.status().message());
    }
  }
  // Follow the consolidator's rebuild once it runs the current pods.
  const bool current =
      o.api && (rebuild.value("reason", "") != "ProjectionChanged" || o.rolled_out);
  if (current && !rebuild.empty() && (Running(api_state) || Running(rebuild.value("state", "")))) {
    if (Running(api_state) || api_state == "done" || api_state == "failed" ||
        api_state == "cancelled") {
      rebuild["state"] = api_state;
    } else if (api_state == "idle" && rebuild.value("reason", "") == "ProjectionChanged") {
      rebuild["state"] = "done";  // nothing to rebuild from: the new pods started afresh
    }
    rebuild["progress"] = static_cast<int>(100 * api_rebuild.value("progress", 0.0));
    if (rebuild["state"] == "done") rebuild["progress"] = 100;
    if (api_rebuild.contains("error")) {
      rebuild["message"] = api_rebuild.value("error", "");
    } else if (api_rebuild.contains("detail")) {
      rebuild["message"] = api_rebuild.value("detail", "");
    } else {
      rebuild.erase("message");
    }
  }
  if (!rebuild.empty()) status["rebuild"] = rebuild;

  Condition rebuilding{"Rebuilding", "False", "Idle", "no rebuild is under way", generation};
  const std::string rstate = rebuild.value("state", "");
  if (!rebuild_note.empty()) {
    rebuilding = {"Rebuilding", "True", "RebuildPending", rebuild_note, generation};
  } else if (Running(rstate)) {
    const Json& counts = api_rebuild;
    std::string progress = std::to_string(rebuild.value("progress", 0)) + "%";
    for (const char* unit : {"events", "positions"}) {
      const std::string done = std::string(unit) + "Done", total = std::string(unit) + "Total";
      if (counts.contains(total)) {
        progress += " (" + std::to_string(counts.value(done, int64_t{0})) + " of " +
                    std::to_string(counts.value(total, int64_t{0})) + " " + unit + ")";
      }
    }
    rebuilding = {"Rebuilding", "True", rebuild.value("reason", "Requested"),
                  rstate + ", " + progress +
                      (rebuild.contains("message") ? "; " + rebuild.value("message", "") : ""),
                  generation};
  } else if (rstate == "failed") {
    rebuilding = {
        "Rebuilding", "False", "RebuildFailed",
        "the rebuild failed: " + rebuild.value("message", "") + "; the live view stays as it was",
        generation};
  } else if (rstate == "cancelled") {
    rebuilding = {"Rebuilding", "False", "RebuildCancelled",
                  "the rebuild was cancelled; the live view stays as it was", generation};
  } else if (rstate == "done") {
    rebuilding = {"Rebuilding", "False", "RebuildDone",
                  "rebuilt and swapped in (requested " + rebuild.value("requestedAt", "") + ")",
                  generation};
  }

  // Lag and positions, as the consolidator reports them.
  std::string reset, failing;
  if (o.api) {
    const Json lag = api.value("lag", Json::object());
    status["lag"] = {{"events", lag.value("events", int64_t{0})},
                     {"seconds", static_cast<int64_t>(lag.value("seconds", 0.0))}};
    Json sources = Json::array();
    for (const auto& s : api.value("sources", Json::array())) {
      sources.push_back({{"stream", s.value("stream", "")},
                         {"position", s.value("position", int64_t{0})},
                         {"state", s.value("state", "")}});
      const std::string error = s["lastError"].is_string() ? s["lastError"].get<std::string>() : "";
      if (s.value("state", "") == "reset" && reset.empty()) {
        reset = "source " + s.value("stream", "") + ": " + error;
      } else if (s.value("state", "") == "failing" && failing.empty()) {
        failing = "source " + s.value("stream", "") + " is failing: " + error;
      }
    }
    status["sources"] = sources;
  }

  const std::string pods =
      o.workload + ": " + std::to_string(o.ready) + " of " + std::to_string(o.want) + " pods ready";
  if (!checked.ok()) {
    ready.reason = "InvalidSpec";
    ready.message =
        checked.message() + " (nothing was rolled out; the pods run the last valid spec)";
  } else if (!applied.ok()) {
    ready.reason = applied.code() == Status::Code::kConflict ? "ResourceConflict" : "ApplyFailed";
    ready.message = applied.message();
  } else if (o.ready < 1) {
    ready.reason = o.pod_problem.empty() ? "WorkloadNotReady" : "PodFailing";
    ready.message = pods + (o.pod_problem.empty() ? "" : "; " + o.pod_problem);
  } else if (!o.api) {
    ready.reason = "StatusUnavailable";
    ready.message = pods + "; cannot read its status: " + o.api_error;
  } else if (!reset.empty()) {
    ready.reason = "SourceReset";
    ready.message = reset + " (annotate " + std::string(kRebuildAnnotation) + " to rebuild)";
  } else if (!failing.empty()) {
    ready.reason = "SourceFailing";
    ready.message = failing;
  } else if (api.contains("paused")) {
    ready.status = "True";  // queries are answered, from the previous read model
    ready.reason = "RebuildingProjection";
    ready.message = pods + "; " + api.value("paused", "");
  } else {
    ready.status = "True";
    ready.reason = "Following";
    ready.message = pods + "; folding " +
                    std::to_string(api.value("sources", Json::array()).size()) + " sources, lag " +
                    std::to_string(status["lag"].value("events", int64_t{0})) + " events";
  }
  const Json* prev_ready = FindCondition(conditions, "Ready");
  const bool transition = !prev_ready || prev_ready->value("reason", "") != ready.reason;
  SetCondition(&conditions, ready);
  SetCondition(&conditions, rebuilding);
  status["conditions"] = conditions;
  status["observedGeneration"] = generation;
  if (auto w2 = WriteStatus(consolidator, status); !w2.ok()) return w2;
  if (transition && ready.status == "False" &&
      (ready.reason == "InvalidSpec" || ready.reason == "SourceReset" ||
       ready.reason == "ResourceConflict" || ready.reason == "PodFailing")) {
    recorder_->Record(consolidator, "Warning", ready.reason, ready.message);
    log::Warn("Consolidator not ready",
              {{"consolidator", key}, {"reason", ready.reason}, {"message", ready.message}});
  }
  if (!applied.ok() && applied.code() != Status::Code::kConflict) return applied;
  return again;
}

Status ConsolidatorReconciler::WriteStatus(const Json& consolidator, const Json& status) {
  const Json before = consolidator.value("status", Json::object());
  if (status == before) return Status::Ok();
  const Json& meta = consolidator["metadata"];
  Json patch = status;
  for (const auto& [k, v] : before.items()) {
    if (!status.contains(k)) patch[k] = nullptr;
  }
  if (before.contains("rebuild") && status.contains("rebuild")) {
    for (const auto& [k, v] : before["rebuild"].items()) {
      if (!status["rebuild"].contains(k)) patch["rebuild"][k] = nullptr;
    }
  }
  auto w = client_->MergePatch(kConsolidators, meta.value("namespace", ""), meta.value("name", ""),
                               {{"status", patch}}, "status");
  return w.ok() ? Status::Ok() : w.status();
}

}  // namespace sidelog::op
