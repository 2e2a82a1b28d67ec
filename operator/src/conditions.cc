#include "conditions.h"

namespace sidelog::op {

const Json* FindCondition(const Json& conditions, const std::string& type) {
  if (!conditions.is_array()) return nullptr;
  for (const auto& c : conditions) {
    if (c.is_object() && c.value("type", "") == type) return &c;
  }
  return nullptr;
}

bool SetCondition(Json* conditions, const Condition& c) {
  if (!conditions->is_array()) *conditions = Json::array();
  Json* existing = nullptr;
  for (auto& item : *conditions) {
    if (item.is_object() && item.value("type", "") == c.type) existing = &item;
  }
  Json next = {{"type", c.type},
               {"status", c.status},
               {"reason", c.reason},
               {"message", c.message},
               {"observedGeneration", c.observed_generation}};
  if (!existing) {
    next["lastTransitionTime"] = KubeTimeNow();
    conditions->push_back(std::move(next));
    return true;
  }
  next["lastTransitionTime"] = existing->value("status", "") == c.status
                                   ? existing->value("lastTransitionTime", KubeTimeNow())
                                   : KubeTimeNow();
  if (*existing == next) return false;
  *existing = std::move(next);
  return true;
}

}  // namespace sidelog::op
