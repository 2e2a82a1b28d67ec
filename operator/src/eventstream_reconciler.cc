#include "eventstream_reconciler.h"

#include <algorithm>
#include <chrono>

#include "conditions.h"
#include "quantity.h"
#include "sidelog/duration.h"
#include "sidelog/log.h"
#include "sidelog/names.h"

namespace sidelog::op {

const ResourceType kEventStreams{"sidelog.dev", "v1alpha1", "eventstreams", "EventStream", true};

namespace {

constexpr int64_t kDefaultDuplicateWindowNs = 120LL * 1000 * 1000 * 1000;  // 2m

bool HasFinalizer(const Json& object) {
  const Json& meta = object["metadata"];
  if (!meta.contains("finalizers")) return false;
  for (const auto& f : meta["finalizers"]) {
    if (f == kEventStreamFinalizer) return true;
  }
  return false;
}

std::string DurationText(int64_t ns) {
  if (ns == 0) return "unlimited";
  if (ns % 3600000000000LL == 0) return std::to_string(ns / 3600000000000LL) + "h";
  if (ns % 60000000000LL == 0) return std::to_string(ns / 60000000000LL) + "m";
  if (ns % 1000000000LL == 0) return std::to_string(ns / 1000000000LL) + "s";
  return std::to_string(ns) + "ns";
}

std::string LimitText(int64_t v) { return v < 0 ? "unlimited" : std::to_string(v); }

// "maxAge 1h -> 2h, replicas 1 -> 3": what differs between the stream and the spec.
std::string Differences(const JetStreamConfig& have, const JetStreamConfig& want) {
  std::vector<std::string> d;
  auto add = [&](const std::string& field, const std::string& a, const std::string& b) {
    if (a != b) d.push_back(field + " " + a + " -> " + b);
  };
  std::string hs, ws;
  for (const auto& s : have.subjects) hs += (hs.empty() ? "" : ",") + s;
  for (const auto& s : want.subjects) ws += (ws.empty() ? "" : ",") + s;
  add("subjects", hs, ws);
  add("maxAge", DurationText(have.max_age_ns), DurationText(want.max_age_ns));
  add("maxBytes", LimitText(have.max_bytes), LimitText(want.max_bytes));
  add("maxCommits", LimitText(have.max_msgs), LimitText(want.max_msgs));
  add("discard", have.discard_new ? "New" : "Old", want.discard_new ? "New" : "Old");
  add("replicas", std::to_string(have.replicas), std::to_string(want.replicas));
  add("duplicateWindow", DurationText(have.duplicate_window_ns),
      DurationText(want.duplicate_window_ns));
  std::string out;
  for (const auto& s : d) out += (out.empty() ? "" : ", ") + s;
  return out;
}

Json JetStreamStatus(const JetStreamConfig& config, const JetStreamInfo& info) {
  return {{"name", config.name},
          {"subjects", config.subjects},
          {"events", info.messages},
          {"bytes", info.bytes},
          {"firstPosition", info.messages == 0 ? 0 : info.first_seq},
          {"lastPosition", info.last_seq}};
}

void Set(Condition* c, bool ready, const std::string& reason, const std::string& message) {
  c->status = ready ? "True" : "False";
  c->reason = reason;
  c->message = message;
}

}  // namespace

Result<JetStreamConfig> DesiredJetStream(const std::string& ns, const std::string& name,
                                         const Json& spec) {
  JetStreamConfig c;
  c.name = JetStreamName(ns, name);
  c.subjects = {StreamSubjects(ns, name)};
  const Json retention = spec.value("retention", Json::object());
  if (retention.contains("maxAge")) {
    auto d = ParseDuration(retention["maxAge"].get<std::string>());
    if (!d.ok()) return Status::Invalid("spec.retention.maxAge: " + d.status().message());
    c.max_age_ns = d->count();
  }
  if (retention.contains("maxBytes")) {
    auto q = ParseQuantity(retention["maxBytes"]);
    if (!q.ok()) return Status::Invalid("spec.retention.maxBytes: " + q.status().message());
    if (*q <= 0) return Status::Invalid("spec.retention.maxBytes must be positive");
    c.max_bytes = *q;
  }
  if (retention.contains("maxCommits")) c.max_msgs = retention["maxCommits"].get<int64_t>();
  c.discard_new = retention.value("discard", "New") != "Old";
  c.replicas = spec.value("replicas", 1);
  if (c.replicas < 1 || c.replicas > 5) return Status::Invalid("spec.replicas must be 1 to 5");
  c.memory_storage = spec.value("storage", "file") == "memory";
  c.duplicate_window_ns = kDefaultDuplicateWindowNs;
  if (c.max_age_ns > 0) c.duplicate_window_ns = std::min(c.duplicate_window_ns, c.max_age_ns);
  if (spec.contains("duplicateWindow")) {
    auto d = ParseDuration(spec["duplicateWindow"].get<std::string>());
    if (!d.ok()) return Status::Invalid("spec.duplicateWindow: " + d.status().message());
    if (d->count() <= 0) return Status::Invalid("spec.duplicateWindow must be positive");
    if (c.max_age_ns > 0 && d->count() > c.max_age_ns) {
      return Status::Invalid("spec.duplicateWindow must not be longer than spec.retention.maxAge");
    }
    c.duplicate_window_ns = d->count();
  }
  return c;
}

EventStreamReconciler::EventStreamReconciler(KubeApi* client, Informer* informer, JetStream* js,
                                             EventRecorder* recorder)
    : client_(client), informer_(informer), js_(js), recorder_(recorder) {}

Result<ReconcileResult> EventStreamReconciler::Reconcile(const std::string& key) {
  // The informer returns our own last write when its watch has not caught up yet: without
  // that, a reconcile queued by our finalizer patch could lack the status we just wrote, and
  // take a stream it had just created for one it found (Adopted).
  auto cached = informer_->Get(key);
  if (!cached) return ReconcileResult{};  // deleted; the finalizer did the cleanup
  Json object = *cached;
  if (object["metadata"].contains("deletionTimestamp")) return Finalize(object);
  if (!HasFinalizer(object)) {
    auto updated = SetFinalizer(object, true);
    if (!updated.ok()) return updated.status();
    object = std::move(*updated);
  }
  std::string ns, name;
  SplitKey(key, &ns, &name);
  Condition ready;
  ready.type = "Ready";
  ready.observed_generation = object["metadata"].value("generation", int64_t{0});
  const Json status = object.value("status", Json::object());
  Json js_status = status.value("jetStream", Json());
  Status converged = Converge(ns, name, object, &ready, &js_status);
  if (auto w = WriteStatus(object, ready, js_status); !w.ok()) return w;
  if (!converged.ok()) return converged;
  return ReconcileResult{};
}

Status EventStreamReconciler::Converge(const std::string& ns, const std::string& name,
                                       const Json& object, Condition* ready, Json* js_status) {
  auto desired = DesiredJetStream(ns, name, object.value("spec", Json::object()));
  if (!desired.ok()) {
    Set(ready, false, "InvalidSpec", desired.status().message());
    return Status::Ok();  // a spec change will bring the object back
  }
  const std::string& stream = desired->name;
  const int64_t recorded_last =
      js_status->is_object() ? js_status->value("lastPosition", int64_t{0}) : 0;
  const bool first_sight = !js_status->is_object() || !js_status->contains("name");
  auto unavailable = [&](const Status& s) {
    Set(ready, false, "NatsUnavailable", "cannot reach JetStream: " + s.message());
    return s;
  };

  auto info = js_->Info(stream);
  if (!info.ok() && info.status().code() != Status::Code::kNotFound)
    return unavailable(info.status());
  if (!info.ok()) {
    if (recorded_last > 0) {
      Set(ready, false, "StreamLost",
          "JetStream stream " + stream + " is gone, and it held commits up to position " +
              std::to_string(recorded_last) +
              ". It is not recreated: a new stream would reuse those positions. Restore it, or "
              "delete and recreate this EventStream to start a new history.");
      return Status::Ok();
    }
    if (auto c = js_->CreateStream(*desired); !c.ok()) {
      if (c.code() != Status::Code::kInvalid) return unavailable(c);
      Set(ready, false, "InvalidSpec", c.message());
      return Status::Ok();
    }
    info = js_->Info(stream);
    if (!info.ok()) return unavailable(info.status());
    *js_status = JetStreamStatus(*desired, *info);
    Set(ready, true, "Created", "created JetStream stream " + stream);
    return Status::Ok();
  }

  if (info->last_seq < static_cast<uint64_t>(recorded_last)) {
    Set(ready, false, "StreamLost",
        "JetStream stream " + stream + " was replaced: its last position is " +
            std::to_string(info->last_seq) + ", but it held commits up to position " +
            std::to_string(recorded_last) +
            ". Writers refuse it, since positions would be reused. Restore the stream, or "
            "delete and recreate this EventStream to start a new history.");
    return Status::Ok();
  }
  if (info->config.memory_storage != desired->memory_storage) {
    *js_status = JetStreamStatus(*desired, *info);
    Set(ready, false, "UnsupportedChange",
        "JetStream stream " + stream + " has " + (info->config.memory_storage ? "memory" : "file") +
            " storage and JetStream cannot change storage in place; delete the stream, or set "
            "spec.storage to match it");
    return Status::Ok();
  }
  if (!(info->config == *desired)) {
    const std::string diff = Differences(info->config, *desired);
    if (auto u = js_->UpdateStream(*desired); !u.ok()) {
      *js_status = JetStreamStatus(*desired, *info);
      if (u.code() != Status::Code::kInvalid) return unavailable(u);
      Set(ready, false, "UnsupportedChange", "cannot apply " + diff + ": " + u.message());
      return Status::Ok();
    }
    info = js_->Info(stream);
    if (!info.ok()) return unavailable(info.status());
    *js_status = JetStreamStatus(*desired, *info);
    if (first_sight) {
      Set(ready, true, "Adopted",
          "adopted the existing JetStream stream " + stream + " and set " + diff);
    } else {
      Set(ready, true, "Updated", "updated JetStream stream " + stream + ": " + diff);
    }
    return Status::Ok();
  }
  *js_status = JetStreamStatus(*desired, *info);
  const Json conditions = object.value("status", Json::object()).value("conditions", Json());
  const Json* prev = FindCondition(conditions, "Ready");
  if (first_sight) {
    Set(ready, true, "Adopted",
        "adopted the existing JetStream stream " + stream + ", which matches the spec");
  } else if (prev && prev->value("status", "") == "True") {
    Set(ready, true, prev->value("reason", "Reconciled"), prev->value("message", ""));
  } else {
    Set(ready, true, "Reconciled", "JetStream stream " + stream + " matches the spec");
  }
  return Status::Ok();
}

Status EventStreamReconciler::WriteStatus(const Json& object, const Condition& ready,
                                          const Json& js_status) {
  const Json before = object.value("status", Json::object());
  Json status = before;
  Json conditions = status.value("conditions", Json::array());
  const Json* prev = FindCondition(conditions, "Ready");
  const bool transition = !prev || prev->value("status", "") != ready.status ||
                          prev->value("reason", "") != ready.reason;
  SetCondition(&conditions, ready);
  status["conditions"] = conditions;
  status["observedGeneration"] = ready.observed_generation;
  if (js_status.is_object()) status["jetStream"] = js_status;
  if (status == before) return Status::Ok();
  const Json& meta = object["metadata"];
  auto r = client_->MergePatch(kEventStreams, meta.value("namespace", ""), meta.value("name", ""),
                               {{"status", status}}, "status");
  if (!r.ok()) return r.status();
  if (transition) {
    recorder_->Record(object, ready.status == "True" ? "Normal" : "Warning", ready.reason,
                      ready.message);
    log::Info(
        "EventStream " + std::string(ready.status == "True" ? "ready" : "not ready"),
        {{"eventStream", ObjectKey(object)}, {"reason", ready.reason}, {"message", ready.message}});
  }
  return Status::Ok();
}

Result<Json> EventStreamReconciler::SetFinalizer(const Json& object, bool present) {
  const Json& meta = object["metadata"];
  Json finalizers = Json::array();
  for (const auto& f : meta.value("finalizers", Json::array())) {
    if (f != kEventStreamFinalizer) finalizers.push_back(f);
  }
  if (present) finalizers.push_back(kEventStreamFinalizer);
  // The resourceVersion makes the patch conditional: a stale cache gets Conflict, not a lost
  // finalizer of someone else.
  Json patch = {
      {"metadata",
       {{"finalizers", finalizers}, {"resourceVersion", meta.value("resourceVersion", "")}}}};
  return client_->MergePatch(kEventStreams, meta.value("namespace", ""), meta.value("name", ""),
                             patch);
}

Result<ReconcileResult> EventStreamReconciler::Finalize(const Json& object) {
  if (!HasFinalizer(object)) return ReconcileResult{};
  const Json& meta = object["metadata"];
  const std::string ns = meta.value("namespace", "");
  const std::string name = meta.value("name", "");
  const std::string stream = JetStreamName(ns, name);
  const Json spec = object.value("spec", Json::object());
  const bool skip =
      meta.value("annotations", Json::object()).value(kSkipCleanupAnnotation, "") == "true";
  if (spec.value("deletionPolicy", "Retain") == "Delete" && !skip) {
    if (auto d = js_->DeleteStream(stream); !d.ok()) {
      Condition ready{"Ready", "False", "DeletionFailed",
                      "deletionPolicy is Delete and JetStream stream " + stream +
                          " could not be deleted (" + d.message() +
                          "); retrying. To delete this EventStream and keep the stream, annotate "
                          "it " +
                          kSkipCleanupAnnotation + "=true.",
                      meta.value("generation", int64_t{0})};
      if (auto w = WriteStatus(object, ready,
                               object.value("status", Json::object()).value("jetStream", Json()));
          !w.ok()) {
        return w;
      }
      return d;
    }
    recorder_->Record(object, "Normal", "StreamDeleted",
                      "deletionPolicy Delete: deleted JetStream stream " + stream);
  } else {
    recorder_->Record(object, "Normal", "StreamRetained",
                      std::string(skip ? "annotation " + std::string(kSkipCleanupAnnotation)
                                       : std::string("deletionPolicy Retain")) +
                          ": kept JetStream stream " + stream);
  }
  auto removed = SetFinalizer(object, false);
  if (!removed.ok()) return removed.status();
  log::Info("EventStream finalized", {{"eventStream", ObjectKey(object)}, {"jetStream", stream}});
  return ReconcileResult{};
}

}  // namespace sidelog::op
