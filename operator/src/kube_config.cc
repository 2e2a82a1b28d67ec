#include "kube_config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sidelog/base64.h"

namespace sidelog::op {
namespace {

constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

Result<std::string> ReadFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Invalid("cannot read " + what + " " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Reads `<key>-data` (base64) or `<key>` (a path, relative to the kubeconfig's folder).
Result<std::string> DataOrFile(const YAML::Node& node, const std::string& key,
                               const std::filesystem::path& base, const std::string& where) {
  if (node[key + "-data"]) {
    return Base64Decode(node[key + "-data"].as<std::string>(), where + "." + key + "-data");
  }
  if (node[key]) {
    std::filesystem::path p = node[key].as<std::string>();
    if (p.is_relative()) p = base / p;
    return ReadFile(p.string(), where + "." + key);
  }
  return std::string();
}

YAML::Node Named(const YAML::Node& list, const std::string& name, const std::string& field) {
  if (!list || !list.IsSequence()) return {};
  for (const auto& item : list) {
    if (item["name"] && item["name"].as<std::string>() == name) return item[field];
  }
  return {};
}

}  // namespace

Result<KubeConfig> LoadKubeconfig(const std::string& path, const std::string& context) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const std::exception& e) {
    return Status::Invalid("kubeconfig " + path + ": " + e.what());
  }
  auto invalid = [&](const std::string& what) {
    return Status::Invalid("kubeconfig " + path + ": " + what);
  };
  std::string ctx_name = context;
  if (ctx_name.empty()) {
    if (!root["current-context"]) return invalid("no current-context");
    ctx_name = root["current-context"].as<std::string>();
  }
  YAML::Node ctx = Named(root["contexts"], ctx_name, "context");
  if (!ctx || ctx.IsNull()) return invalid("no context named " + ctx_name);
  if (!ctx["cluster"]) return invalid("context " + ctx_name + " names no cluster");
  const std::string cluster_name = ctx["cluster"].as<std::string>();
  YAML::Node cluster = Named(root["clusters"], cluster_name, "cluster");
  if (!cluster || cluster.IsNull() || !cluster["server"])
    return invalid("no cluster named " + cluster_name + " with a server");
  const auto base = std::filesystem::absolute(path).parent_path();

  KubeConfig c;
  try {
    c.server = cluster["server"].as<std::string>();
    while (!c.server.empty() && c.server.back() == '/') c.server.pop_back();
    c.insecure =
        cluster["insecure-skip-tls-verify"] && cluster["insecure-skip-tls-verify"].as<bool>();
    auto ca = DataOrFile(cluster, "certificate-authority", base, "cluster " + cluster_name);
    if (!ca.ok()) return invalid(ca.status().message());
    c.ca_pem = *ca;
    if (ctx["namespace"]) c.default_namespace = ctx["namespace"].as<std::string>();
    if (ctx["user"]) {
      const std::string user_name = ctx["user"].as<std::string>();
      YAML::Node user = Named(root["users"], user_name, "user");
      if (!user || user.IsNull()) return invalid("no user named " + user_name);
      if (user["exec"] || user["auth-provider"]) {
        return invalid("user " + user_name + ": exec and auth-provider plugins are not supported");
      }
      if (user["token"]) c.token = user["token"].as<std::string>();
      if (user["tokenFile"]) c.token_file = user["tokenFile"].as<std::string>();
      auto cert = DataOrFile(user, "client-certificate", base, "user " + user_name);
      if (!cert.ok()) return invalid(cert.status().message());
      auto key = DataOrFile(user, "client-key", base, "user " + user_name);
      if (!key.ok()) return invalid(key.status().message());
      c.client_cert_pem = *cert;
      c.client_key_pem = *key;
      if (c.client_cert_pem.empty() != c.client_key_pem.empty()) {
        return invalid("user " + user_name + " needs both a client certificate and a client key");
      }
    }
  } catch (const YAML::Exception& e) {
    return invalid(e.what());
  }
  return c;
}

Result<KubeConfig> InClusterConfig() {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !port) return Status::NotFound("not in a pod: KUBERNETES_SERVICE_HOST is not set");
  KubeConfig c;
  std::string h = host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";  // IPv6
  c.server = "https://" + h + ":" + port;
  const std::string dir = kServiceAccountDir;
  auto ca = ReadFile(dir + "/ca.crt", "service-account CA");
  if (!ca.ok()) return ca.status();
  c.ca_pem = *ca;
  c.token_file = dir + "/token";
  auto ns = ReadFile(dir + "/namespace", "service-account namespace");
  if (ns.ok() && !ns->empty()) c.default_namespace = *ns;
  return c;
}

Result<KubeConfig> ResolveKubeConfig(const std::string& path) {
  if (!path.empty()) return LoadKubeconfig(path);
  if (const char* env = std::getenv("KUBECONFIG"); env && *env) {
    std::string first = env;
    first = first.substr(0, first.find(':'));
    return LoadKubeconfig(first);
  }
  auto in_cluster = InClusterConfig();
  if (in_cluster.ok() || in_cluster.status().code() != Status::Code::kNotFound) return in_cluster;
  if (const char* home = std::getenv("HOME")) {
    std::string p = std::string(home) + "/.kube/config";
    if (std::filesystem::exists(p)) return LoadKubeconfig(p);
  }
  return Status::NotFound(
      "no Kubernetes config: pass --kubeconfig, set KUBECONFIG, or run in a pod");
}

}  // namespace sidelog::op
