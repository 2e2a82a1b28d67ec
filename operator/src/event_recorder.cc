#include "event_recorder.h"

#include "sidelog/log.h"

namespace sidelog::op {

namespace {
const ResourceType kEvents{"", "v1", "events", "Event", true};
}

EventRecorder::EventRecorder(KubeApi* client, std::string component, std::string instance)
    : client_(client), component_(std::move(component)), instance_(std::move(instance)) {}

void EventRecorder::Record(const Json& object, const std::string& type, const std::string& reason,
                           const std::string& message) {
  const Json& meta = object.at("metadata");
  const std::string ns = meta.value("namespace", "default");
  const std::string now = KubeTimeNow();
  Json event = {
      {"apiVersion", "v1"},
      {"kind", "Event"},
      {"metadata", {{"generateName", meta.value("name", "object") + "."}, {"namespace", ns}}},
      {"involvedObject",
       {{"apiVersion", object.value("apiVersion", "")},
        {"kind", object.value("kind", "")},
        {"name", meta.value("name", "")},
        {"namespace", ns},
        {"uid", meta.value("uid", "")},
        {"resourceVersion", meta.value("resourceVersion", "")}}},
      {"reason", reason},
      {"message", message.size() > 1024 ? message.substr(0, 1021) + "..." : message},
      {"type", type},
      {"source", {{"component", component_}}},
      {"reportingComponent", component_},
      {"reportingInstance", instance_},
      {"firstTimestamp", now},
      {"lastTimestamp", now},
      {"count", 1},
  };
  auto r = client_->Create(kEvents, ns, event);
  if (!r.ok()) {
    log::Warn("could not record an event",
              {{"object", ObjectKey(object)}, {"reason", reason}, {"error", r.status().message()}});
  }
}

}  // namespace sidelog::op
