#include "sidecar_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <regex>

#include "sidelog/event.h"

namespace sidelog::op {
namespace {

// Plain scalars that YAML 1.1 or 1.2 resolves to a non-string, or that need quoting to parse.
bool NeedsQuotes(const std::string& s) {
  if (s.empty()) return true;
  std::string lower = s;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static const char* kWords[] = {"y",     "n",    "yes", "no",   "on",    "off", "true",
                                 "false", "null", "~",   ".inf", "-.inf", ".nan"};
  for (const char* w : kWords) {
    if (lower == w) return true;
  }
  // Identifiers, paths and URLs are safe; anything else (numbers, times, punctuation) is quoted.
  static const std::regex kSafe("^[A-Za-z_/][A-Za-z0-9_./-]*$");
  return !std::regex_match(s, kSafe);
}

// Text of several lines (SQL) reads best as a literal block, which keeps it verbatim as long as
// its first line does not start with a blank, no line ends with one, and it holds no tab or
// other control character.
bool Multiline(const std::string& s) {
  if (s.find('\n') == std::string::npos || s.front() == ' ') return false;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find('\n', start);
    if (end == std::string::npos) end = s.size();
    const std::string line = s.substr(start, end - start);
    if (!line.empty() && line.back() == ' ') return false;
    for (char c : line) {
      if (static_cast<unsigned char>(c) < 0x20) return false;
    }
    start = end + 1;
  }
  return true;
}

void Emit(YAML::Emitter& out, const Json& v) {
  switch (v.type()) {
    case Json::value_t::object:
      out << YAML::BeginMap;
      for (const auto& [k, item] : v.items()) {
        out << YAML::Key;
        if (NeedsQuotes(k)) out << YAML::DoubleQuoted;
        out << k << YAML::Value;
        Emit(out, item);
      }
      out << YAML::EndMap;
      break;
    case Json::value_t::array:
      out << YAML::BeginSeq;
      for (const auto& item : v) Emit(out, item);
      out << YAML::EndSeq;
      break;
    case Json::value_t::string: {
      const auto& s = v.get_ref<const std::string&>();
      if (Multiline(s)) {
        out << YAML::Literal;
      } else if (NeedsQuotes(s)) {
        out << YAML::DoubleQuoted;
      }
      out << s;
      break;
    }
    case Json::value_t::boolean:
      out << v.get<bool>();
      break;
    case Json::value_t::number_integer:
      out << v.get<int64_t>();
      break;
    case Json::value_t::number_unsigned:
      out << v.get<uint64_t>();
      break;
    case Json::value_t::number_float:
      out << v.dump();  // nlohmann's shortest round-trip form
      break;
    default:
      out << YAML::Null;
      break;
  }
}

}  // namespace

std::string ToYaml(const Json& value) {
  YAML::Emitter out;
  out.SetIndent(2);
  Emit(out, value);
  return std::string(out.c_str()) + "\n";
}

Json NatsSection(const NatsConfig& nats) {
  Json out = {{"url", nats.url}};
  if (!nats.creds_file.empty()) out["credsFile"] = nats.creds_file;
  Json tls = Json::object();
  if (!nats.tls.ca.empty()) tls["ca"] = nats.tls.ca;
  if (!nats.tls.cert.empty()) tls["cert"] = nats.tls.cert;
  if (!nats.tls.key.empty()) tls["key"] = nats.tls.key;
  if (!tls.empty()) out["tls"] = tls;
  return out;
}

std::string SidecarConfigMapName(const std::string& service) { return "sidelog-" + service; }

std::string RenderSidecarConfig(const Json& service, const std::vector<RenderedStream>& streams,
                                const SidecarSettings& settings) {
  const Json& meta = service.at("metadata");
  const Json sidecar = service.value("spec", Json::object()).value("sidecar", Json::object());
  // nlohmann's objects keep keys sorted, so the text is a function of the content alone.
  Json config = {
      {"service", meta.value("name", "")},
      {"namespace", meta.value("namespace", "")},
      {"listen", "127.0.0.1:" + std::to_string(sidecar.value("port", 4380))},
      {"healthListen", settings.health_listen},
      {"dataDir", settings.data_dir},
      {"logLevel", sidecar.value("logLevel", "info")},
  };
  if (!settings.nats.url.empty()) config["nats"] = NatsSection(settings.nats);
  // The app's port for push deliveries; a pod's sidelog.dev/app-port annotation overrides it
  // (the webhook sets SIDELOG_APP_PORT).
  const Json spec = service.value("spec", Json::object());
  if (spec.contains("appPort") && spec["appPort"].is_number_integer()) {
    config["appPort"] = spec["appPort"];
  }
  Json list = Json::array();
  for (const auto& s : streams) {
    Json j = {{"name", s.name}, {"access", s.write ? "write" : "read"}};
    if (!s.types.empty()) j["types"] = s.types;
    if (s.entity.is_object() && !s.entity.empty()) j["entity"] = s.entity;
    if (s.deliver.is_object()) j["deliver"] = s.deliver;
    list.push_back(std::move(j));
  }
  config["streams"] = list;
  return "# Rendered by sidelog-operator from EventService " + meta.value("namespace", "") + "/" +
         meta.value("name", "") + " and its EventStreams. Edits are overwritten.\n" +
         ToYaml(config);
}

Json SidecarConfigMap(const Json& service, const std::string& yaml) {
  const Json& meta = service.at("metadata");
  const std::string name = meta.value("name", "");
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata",
           {{"name", SidecarConfigMapName(name)},
            {"namespace", meta.value("namespace", "")},
            {"labels",
             {{"app.kubernetes.io/managed-by", "sidelog-operator"},
              {"app.kubernetes.io/part-of", "sidelog"},
              {"sidelog.dev/service", name}}},
            {"annotations", {{kConfigHashAnnotation, Sha256Hex(yaml)}}},
            {"ownerReferences", Json::array({ControllerReference(service)})}}},
          {"data", {{kSidecarConfigKey, yaml}}}};
}

}  // namespace sidelog::op
