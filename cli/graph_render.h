// The picture `sidelog graph` draws of a DependencyGraph, and its Mermaid and Graphviz texts.
//
// Services are nodes, noting the streams they produce and their producer conflicts. Each
// consumed stream is an edge from its effective producer to the consumer, labelled
// "stream [Type, Type]" (no types: every type is read). A consumed stream without producers is
// a stream node, and one without an EventStream a dashed red node, with an edge to it from
// each service that lists it in produces. Edges on a dependency cycle are red unless cycles
// are allowed. A legend names the colours in use.
//
// Pure functions of their input; no I/O.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "dependency_graph.h"

namespace sidelog::cli {

struct Drawing {
  enum class NodeKind {
    kService,
    kConflicted,  // a service listing a Single stream in produces that another one keeps
    kStream,      // an EventStream that no service produces
    kMissing,     // a stream name without an EventStream
  };
  struct Node {
    NodeKind kind = NodeKind::kService;
    std::string name;
    std::vector<std::string> notes;  // lines under the name
  };
  enum class EdgeKind { kNormal, kCycle, kMissing };
  struct Edge {
    size_t from = 0;  // index into nodes
    size_t to = 0;
    std::string label;
    EdgeKind kind = EdgeKind::kNormal;
  };

  std::string ns;
  std::vector<Node> nodes;  // services by name, then stream nodes by name
  std::vector<Edge> edges;  // by consumer, stream and producer; then produces of missing streams

  bool Has(NodeKind kind) const;
  bool Has(EdgeKind kind) const;
};

Drawing Draw(const op::DependencyGraph& graph, const std::string& ns, op::CyclePolicy cycles);

// A `flowchart LR` for a ```mermaid block (the fence not included).
std::string MermaidText(const Drawing& drawing);
// A Graphviz digraph.
std::string DotText(const Drawing& drawing);

}  // namespace sidelog::cli
