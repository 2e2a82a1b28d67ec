#include "sidelog/yaml.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "sidelog/names.h"

namespace sidelog {
namespace {

// YAML converted to JSON, remembering the line of every node by its JSON pointer.

Json ScalarToJson(const YAML::Node& node) {
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") return s;  // quoted: always a string
  if (s == "null" || s == "~" || s.empty()) return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  // Integers and floats as YAML 1.2 core schema spells them.
  char* end = nullptr;
  errno = 0;
  long long i = std::strtoll(s.c_str(), &end, 10);
  if (end && *end == '\0' && errno == 0 && (std::isdigit(s[0]) || s[0] == '-' || s[0] == '+')) {
    return static_cast<int64_t>(i);
  }
  double d = std::strtod(s.c_str(), &end);
  if (end && *end == '\0' && (std::isdigit(s[0]) || s[0] == '-' || s[0] == '+' || s[0] == '.')) {
    return d;
  }
  return s;
}

Json ToJson(const YAML::Node& node, const std::string& ptr, YamlDocument* doc) {
  doc->lines[ptr] = node.Mark().line + 1;
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return ScalarToJson(node);
    case YAML::NodeType::Sequence: {
      Json arr = Json::array();
      size_t i = 0;
      for (const auto& item : node) {
        arr.push_back(ToJson(item, ptr + "/" + std::to_string(i++), doc));
      }
      return arr;
    }
    case YAML::NodeType::Map: {
      Json obj = Json::object();
      for (const auto& kv : node) {
        std::string key = kv.first.as<std::string>();
        std::string child = ptr + "/" + EscapePointerToken(key);
        obj[key] = ToJson(kv.second, child, doc);
        doc->lines[child] = kv.first.Mark().line + 1;
      }
      return obj;
    }
    default:
      return nullptr;
  }
}

}  // namespace

std::string EscapePointerToken(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

// "/streams/0/entity/reducers/A/0/op" -> "streams[0].entity.reducers.A[0].op"
std::string DottedPointer(const std::string& ptr) {
  std::string out;
  size_t i = 0;
  while (i < ptr.size()) {
    size_t j = ptr.find('/', i + 1);
    std::string tok = ptr.substr(i + 1, j == std::string::npos ? std::string::npos : j - i - 1);
    std::string unescaped;
    for (size_t k = 0; k < tok.size(); ++k) {
      if (tok[k] == '~' && k + 1 < tok.size()) {
        unescaped += tok[k + 1] == '1' ? '/' : '~';
        ++k;
      } else {
        unescaped += tok[k];
      }
    }
    bool numeric =
        !unescaped.empty() && unescaped.find_first_not_of("0123456789") == std::string::npos;
    if (numeric) {
      out += "[" + unescaped + "]";
    } else {
      out += (out.empty() ? "" : ".") + unescaped;
    }
    if (j == std::string::npos) break;
    i = j;
  }
  return out;
}

int YamlDocument::LineOf(const std::string& ptr) const {
  std::string p = ptr;
  for (;;) {
    auto it = lines.find(p);
    if (it != lines.end()) return it->second;
    if (p.empty()) return 0;
    p = p.substr(0, p.rfind('/'));
  }
}

ConfigWarning YamlDocument::Warning(const std::string& ptr, const std::string& message) const {
  return {origin, LineOf(ptr), DottedPointer(ptr), message};
}

Status YamlDocument::Error(const std::string& ptr, const std::string& message) const {
  const int line = LineOf(ptr);
  std::string where = origin + (line > 0 ? ":" + std::to_string(line) : "");
  std::string field = DottedPointer(ptr);
  ErrorContext ctx;
  ctx.rule = field;
  return Status::Invalid(where + ": " + (field.empty() ? "" : field + ": ") + message, ctx);
}

Result<YamlDocument> ParseYaml(const std::string& text, const std::string& origin) {
  YamlDocument doc;
  doc.origin = origin;
  if (size_t bad = 0; !IsValidUtf8(text, &bad)) {
    const auto line =
        std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(bad), '\n');
    return Status::Invalid(origin + ":" + std::to_string(line + 1) + ": not valid UTF-8 (byte " +
                           std::to_string(bad) + "); YAML configs are UTF-8 text");
  }
  try {
    YAML::Node node = YAML::Load(text);
    doc.root = ToJson(node, "", &doc);
  } catch (const YAML::Exception& e) {
    return Status::Invalid(origin + ":" + std::to_string(e.mark.line + 1) +
                           ": not valid YAML: " + e.msg);
  }
  return doc;
}

Result<YamlDocument> LoadYamlFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::Invalid("cannot read config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseYaml(ss.str(), path);
}

}  // namespace sidelog
