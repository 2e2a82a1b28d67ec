#include "event_parameter.h"

namespace sidelog::consolidator {
namespace {

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t dot = s.find(sep, start);
    out.push_back(s.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) return out;
    start = dot + 1;
  }
}

bool IsIndex(const std::string& s) {
  return !s.empty() && s.size() <= 9 && s.find_first_not_of("0123456789") == std::string::npos;
}

}  // namespace

Result<EventParameter> EventParameter::Parse(const std::string& name) {
  EventParameter p;
  static const std::vector<std::pair<const char*, Kind>> kPlain = {
      {"entity", Kind::kEntity}, {"type", Kind::kType},       {"id", Kind::kId},
      {"stream", Kind::kStream}, {"version", Kind::kVersion}, {"position", Kind::kPosition},
      {"time", Kind::kTime},     {"data", Kind::kData}};
  for (const auto& [plain, kind] : kPlain) {
    if (name == plain) {
      p.kind_ = kind;
      return p;
    }
  }
  auto parts = Split(name, '.');
  bool segments_ok = parts.size() >= 2;
  for (size_t i = 1; i < parts.size(); ++i) segments_ok = segments_ok && !parts[i].empty();
  if (segments_ok && parts[0] == "data") {
    p.kind_ = Kind::kData;
    p.path_.assign(parts.begin() + 1, parts.end());
    return p;
  }
  if (segments_ok && parts[0] == "meta" && parts.size() == 2) {
    p.kind_ = Kind::kMeta;
    p.path_ = {parts[1]};
    return p;
  }
  return Status::Invalid(":" + name +
                         " is not a handler parameter; use :entity :type :version :position "
                         ":time :id :stream :data :data.<path> or :meta.<key>");
}

SqlValue EventParameter::ValueFor(const StoredEvent& e) const {
  switch (kind_) {
    case Kind::kEntity:
      return e.entity;
    case Kind::kType:
      return e.type;
    case Kind::kId:
      return e.id;
    case Kind::kStream:
      return e.stream;
    case Kind::kVersion:
      return e.version;
    case Kind::kPosition:
      return e.position;
    case Kind::kTime:
      return FormatTime(e.time);
    case Kind::kMeta: {
      auto it = e.metadata.find(path_[0]);
      if (it == e.metadata.end()) return std::monostate{};
      return it->second;
    }
    case Kind::kData: {
      const Json* node = &e.data;
      for (const auto& key : path_) {
        if (node->is_object()) {
          auto it = node->find(key);
          if (it == node->end()) return std::monostate{};
          node = &*it;
        } else if (node->is_array() && IsIndex(key) && std::stoul(key) < node->size()) {
          node = &(*node)[std::stoul(key)];
        } else {
          return std::monostate{};
        }
      }
      return SqlValueFromJson(*node);
    }
  }
  return std::monostate{};
}

}  // namespace sidelog::consolidator
