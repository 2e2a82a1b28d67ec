// Where and how to reach the Kubernetes API: from a kubeconfig file (token, client certificate,
// CA; inline *-data or file paths) or from inside a pod (service-account token, CA and
// KUBERNETES_SERVICE_HOST/PORT). A plain value; safe to copy.
#pragma once

#include <string>

#include "sidelog/status.h"

namespace sidelog::op {

struct KubeConfig {
  std::string server;           // https://host:port
  std::string ca_pem;           // trusted CA certificates (PEM); empty: the system's
  std::string client_cert_pem;  // client certificate chain (PEM), with client_key_pem
  std::string client_key_pem;
  std::string token;       // bearer token
  std::string token_file;  // re-read when it changes (service-account tokens rotate)
  bool insecure = false;   // insecure-skip-tls-verify
  std::string default_namespace = "default";
};

// Loads the current context of the kubeconfig at `path` (or `context` when not empty). Invalid
// naming the file and what is missing or unsupported (exec and auth-provider plugins are not).
Result<KubeConfig> LoadKubeconfig(const std::string& path, const std::string& context = "");

// The in-cluster config; NotFound when not running in a pod.
Result<KubeConfig> InClusterConfig();

// KUBECONFIG (its first file) when set and `path` is empty, else `path`; without either, the
// in-cluster config, then ~/.kube/config.
Result<KubeConfig> ResolveKubeConfig(const std::string& path);

}  // namespace sidelog::op
