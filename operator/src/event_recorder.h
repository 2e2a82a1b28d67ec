// EventRecorder: Kubernetes Events (core/v1) on objects, for the transitions a person should
// see in `kubectl describe` and `kubectl get events`. Best effort: a failure is logged, never
// returned, so that reporting cannot break reconciling.
//
// Thread-safe.
#pragma once

#include <string>

#include "kube_client.h"

namespace sidelog::op {

class EventRecorder {
 public:
  // `instance` names this operator process (its leader-election identity).
  EventRecorder(KubeApi* client, std::string component, std::string instance);

  // `type` is "Normal" or "Warning"; `object` the full object the event is about.
  void Record(const Json& object, const std::string& type, const std::string& reason,
              const std::string& message);

 private:
  KubeApi* client_;
  const std::string component_;
  const std::string instance_;
};

}  // namespace sidelog::op
