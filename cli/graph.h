// `sidelog graph`: the dependency graph of one namespace's EventServices, read from the cluster
// (the kubeconfig, as kubectl finds it) or from manifest files, and written as Mermaid, Graphviz
// dot, or SVG/PNG rendered by Graphviz's `dot`.
//
// Services are nodes. Each consumed stream is an edge from its producer to the consumer,
// labelled with the stream and the types read; a stream that no service produces is a node of
// its own. Missing EventStreams, Single-producer conflicts and dependency cycles are drawn in
// colour, explained by a legend, and reported on stderr.
#pragma once

#include <string>
#include <vector>

#include "dependency_graph.h"

namespace sidelog::cli {

// The command's help text.
extern const char* const kGraphUsage;

struct GraphOptions {
  std::string ns;                  // empty: the kubeconfig's namespace, or the manifests'
  std::vector<std::string> files;  // manifest files, directories or "-" (stdin); empty: the cluster
  std::string kubeconfig;          // empty: $KUBECONFIG, in-cluster, then ~/.kube/config
  std::string format = "mermaid";  // mermaid | dot | svg | png
  std::string output;              // a file; empty: stdout (not for png)
  op::CyclePolicy cycles = op::CyclePolicy::kWarn;
};

// Runs the command. Returns the exit code: 0 done; 1 an error (a manifest that does not parse,
// an API error, dot failing or missing, or a cycle with cycles denied); 2 bad usage; 3 the API
// server cannot be reached.
int RunGraph(const GraphOptions& options);

}  // namespace sidelog::cli
