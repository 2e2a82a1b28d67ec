// Helpers for the operator's unit tests: objects as the API server stores them, and waiting
// on a condition with a deadline instead of sleeping.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "kube_client.h"

namespace sidelog::op::testing {

// Polls `done` every 5 ms until it holds or `timeout` passes; true when it held.
inline bool WaitFor(const std::function<bool()>& done,
                    std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

inline Json Object(const std::string& kind, const std::string& ns, const std::string& name,
                   Json spec) {
  return {{"apiVersion", "sidelog.dev/v1alpha1"},
          {"kind", kind},
          {"metadata", {{"name", name}, {"namespace", ns}}},
          {"spec", std::move(spec)}};
}

// The value at JSON pointer `pointer` in `object`, or null when any part of the path is absent
// (a status the reconciler has not written yet, an object without annotations).
inline Json At(const Json& object, const std::string& pointer) {
  const Json::json_pointer p(pointer);
  return object.contains(p) ? object.at(p) : Json();
}

// The condition `type` of an object's status ("" when absent), as "Status/Reason".
inline std::string ConditionOf(const Json& object, const std::string& type) {
  for (const auto& c : object.value("status", Json::object()).value("conditions", Json::array())) {
    if (c.value("type", "") == type) return c.value("status", "") + "/" + c.value("reason", "");
  }
  return "";
}

}  // namespace sidelog::op::testing
