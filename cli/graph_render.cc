#include "graph_render.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <utility>

namespace sidelog::cli {
namespace {

using NodeKind = Drawing::NodeKind;
using EdgeKind = Drawing::EdgeKind;

// Colours: one per problem, the same in both formats.
constexpr const char* kRed = "#d62728";         // cycles, missing streams
constexpr const char* kRedFill = "#fdecea";     // missing streams
constexpr const char* kOrange = "#ef6c00";      // producer conflicts
constexpr const char* kOrangeFill = "#ffe0b2";  // producer conflicts
constexpr const char* kBlue = "#1e88e5";        // services
constexpr const char* kBlueFill = "#e3f2fd";    // services
constexpr const char* kGrey = "#78909c";        // streams, edges
constexpr const char* kGreyFill = "#eceff1";    // streams

std::string Join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

std::string EdgeLabel(const op::ConsumedStream& c) {
  return c.types.empty() ? c.stream : c.stream + " [" + Join(c.types, ", ") + "]";
}

// The legend's lines, for the colours the drawing uses.
std::vector<std::pair<std::string, const char*>> Legend(const Drawing& d) {
  std::vector<std::pair<std::string, const char*>> lines;
  if (d.Has(EdgeKind::kCycle)) lines.emplace_back("red edges: a dependency cycle", kRed);
  if (d.Has(NodeKind::kConflicted)) {
    lines.emplace_back("orange: lists a Single-producer stream that an older service keeps",
                       kOrange);
  }
  if (d.Has(NodeKind::kMissing)) lines.emplace_back("dashed red: no such EventStream", kRed);
  return lines;
}

class Builder {
 public:
  Builder(const op::DependencyGraph& graph, const std::string& ns, op::CyclePolicy cycles)
      : graph_(graph) {
    drawing_.ns = ns;
    if (cycles != op::CyclePolicy::kAllow) {
      for (const auto& cycle : graph.cycles()) {
        for (size_t i = 0; i < cycle.size(); ++i) {
          cycle_edges_.insert({cycle[i], cycle[(i + 1) % cycle.size()]});
        }
      }
    }
  }

  Drawing Build() && {
    for (const auto& [name, node] : graph_.service_nodes()) AddService(name, node);
    for (const auto& [name, node] : graph_.service_nodes()) {
      for (const auto& c : node.consumes) AddConsumed(name, c);
    }
    for (const auto& [name, node] : graph_.service_nodes()) {
      for (const auto& stream : node.produces) {
        if (!graph_.HasStream(stream)) {
          Edge(services_.at(name), StreamNode(stream), "produces", EdgeKind::kMissing);
        }
      }
    }
    // Stream nodes go after the services, by name; edges follow their nodes' new indices.
    std::vector<size_t> moved(drawing_.nodes.size());
    for (size_t i = 0; i < moved.size(); ++i) moved[i] = i;
    const size_t first_stream = services_.size();
    size_t next = first_stream;
    for (const auto& [name, index] : streams_) moved[index] = next++;
    std::vector<Drawing::Node> nodes(drawing_.nodes.size());
    for (size_t i = 0; i < nodes.size(); ++i) nodes[moved[i]] = std::move(drawing_.nodes[i]);
    drawing_.nodes = std::move(nodes);
    for (auto& e : drawing_.edges) {
      e.from = moved[e.from];
      e.to = moved[e.to];
    }
    return std::move(drawing_);
  }

 private:
  void AddService(const std::string& name, const op::ServiceNode& node) {
    Drawing::Node n;
    n.name = name;
    std::vector<std::string> produced;
    for (const auto& stream : node.produces) {
      auto producers = graph_.ProducersOf(stream);
      if (std::find(producers.begin(), producers.end(), name) != producers.end()) {
        produced.push_back(stream);
      }
    }
    if (!produced.empty()) n.notes.push_back("produces: " + Join(produced, ", "));
    const op::ServiceResolution* r = graph_.Find(name);
    for (const auto& conflict : r->conflicts) {
      n.kind = NodeKind::kConflicted;
      n.notes.push_back("conflict: " + conflict.stream + " is kept by " + conflict.owner);
    }
    services_[name] = drawing_.nodes.size();
    drawing_.nodes.push_back(std::move(n));
  }

  void AddConsumed(const std::string& consumer, const op::ConsumedStream& c) {
    const size_t to = services_.at(consumer);
    if (!graph_.HasStream(c.stream)) {
      Edge(StreamNode(c.stream), to, EdgeLabel(c), EdgeKind::kMissing);
      return;
    }
    auto producers = graph_.ProducersOf(c.stream);
    if (producers.empty()) {
      Edge(StreamNode(c.stream), to, EdgeLabel(c), EdgeKind::kNormal);
      return;
    }
    for (const auto& producer : producers) {
      // The edge is drawn producer -> consumer; the cycle runs consumer -> producer.
      const bool on_cycle = cycle_edges_.count({consumer, producer}) > 0;
      Edge(services_.at(producer), to, EdgeLabel(c),
           on_cycle ? EdgeKind::kCycle : EdgeKind::kNormal);
    }
  }

  size_t StreamNode(const std::string& stream) {
    auto it = streams_.find(stream);
    if (it != streams_.end()) return it->second;
    Drawing::Node n;
    n.name = stream;
    if (graph_.HasStream(stream)) {
      n.kind = NodeKind::kStream;
      n.notes.emplace_back("no producer");
    } else {
      n.kind = NodeKind::kMissing;
      n.notes.emplace_back("no EventStream");
    }
    streams_[stream] = drawing_.nodes.size();
    drawing_.nodes.push_back(std::move(n));
    return drawing_.nodes.size() - 1;
  }

  void Edge(size_t from, size_t to, std::string label, EdgeKind kind) {
    drawing_.edges.push_back({from, to, std::move(label), kind});
  }

  const op::DependencyGraph& graph_;
  Drawing drawing_;
  std::map<std::string, size_t> services_, streams_;           // node index by name
  std::set<std::pair<std::string, std::string>> cycle_edges_;  // {dependent, dependency}
};

// Mermaid: node ids from the names, prefixed by kind so that no name can be a keyword ("end")
// or read as an arrow head ("o", "x").
std::vector<std::string> MermaidIds(const Drawing& d) {
  std::vector<std::string> ids;
  std::set<std::string> used;
  for (const auto& n : d.nodes) {
    bool service = n.kind == NodeKind::kService || n.kind == NodeKind::kConflicted;
    std::string id = service ? "svc_" : "evs_";
    for (char c : n.name) id += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    std::string unique = id;
    for (int i = 2; used.count(unique) > 0; ++i) unique = id + "_" + std::to_string(i);
    used.insert(unique);
    ids.push_back(unique);
  }
  return ids;
}

std::string MermaidEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"') {
      out += "#quot;";
    } else if (c == '<') {
      out += "#lt;";
    } else if (c == '>') {
      out += "#gt;";
    } else {
      out += c;
    }
  }
  return out;
}

std::string DotEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '&') {
      out += "&amp;";
    } else if (c == '<') {
      out += "&lt;";
    } else if (c == '>') {
      out += "&gt;";
    } else if (c == '"') {
      out += "&quot;";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

bool Drawing::Has(NodeKind kind) const {
  return std::any_of(nodes.begin(), nodes.end(), [&](const Node& n) { return n.kind == kind; });
}

bool Drawing::Has(EdgeKind kind) const {
  return std::any_of(edges.begin(), edges.end(), [&](const Edge& e) { return e.kind == kind; });
}

Drawing Draw(const op::DependencyGraph& graph, const std::string& ns, op::CyclePolicy cycles) {
  return Builder(graph, ns, cycles).Build();
}

std::string MermaidText(const Drawing& d) {
  const std::vector<std::string> ids = MermaidIds(d);
  std::string out = "flowchart LR\n";
  out += "  %% EventServices of namespace " + d.ns + " (sidelog graph)\n";
  for (size_t i = 0; i < d.nodes.size(); ++i) {
    const auto& n = d.nodes[i];
    std::string label = MermaidEscape(n.name);
    for (const auto& note : n.notes) label += "<br/>" + MermaidEscape(note);
    const bool stream = n.kind == NodeKind::kStream || n.kind == NodeKind::kMissing;
    out += "  " + ids[i] + (stream ? "[(\"" : "[\"") + label + (stream ? "\")]" : "\"]") + "\n";
  }
  for (const auto& e : d.edges) {
    const char* arrow = e.kind == EdgeKind::kMissing ? " -.->|\"" : " -->|\"";
    out += "  " + ids[e.from] + arrow + MermaidEscape(e.label) + "\"| " + ids[e.to] + "\n";
  }
  const auto legend = Legend(d);
  if (!legend.empty()) {
    std::vector<std::string> lines;
    lines.reserve(legend.size());
    for (const auto& [text, colour] : legend) lines.push_back(MermaidEscape(text));
    out += "  legend[\"" + Join(lines, "<br/>") + "\"]\n";
  }

  // A class per kind of node in use, then its members.
  const std::map<NodeKind, std::pair<const char*, std::string>> classes = {
      {NodeKind::kService, {"service", std::string("fill:") + kBlueFill + ",stroke:" + kBlue}},
      {NodeKind::kConflicted,
       {"conflict",
        std::string("fill:") + kOrangeFill + ",stroke:" + kOrange + ",stroke-width:2px"}},
      {NodeKind::kStream, {"stream", std::string("fill:") + kGreyFill + ",stroke:" + kGrey}},
      {NodeKind::kMissing,
       {"missing", std::string("fill:") + kRedFill + ",stroke:" + kRed +
                       ",stroke-width:2px,stroke-dasharray:5 3"}},
  };
  for (const auto& [kind, style] : classes) {
    std::vector<std::string> members;
    for (size_t i = 0; i < d.nodes.size(); ++i) {
      if (d.nodes[i].kind == kind) members.push_back(ids[i]);
    }
    if (members.empty()) continue;
    out += std::string("  classDef ") + style.first + " " + style.second + "\n";
    out += "  class " + Join(members, ",") + " " + style.first + "\n";
  }
  if (!legend.empty()) {
    out += "  classDef legend fill:#ffffff,stroke:#bdbdbd,text-align:left\n";
    out += "  class legend legend\n";
  }
  for (size_t i = 0; i < d.edges.size(); ++i) {
    if (d.edges[i].kind == EdgeKind::kCycle) {
      out += "  linkStyle " + std::to_string(i) + " stroke:" + kRed + ",stroke-width:3px\n";
    } else if (d.edges[i].kind == EdgeKind::kMissing) {
      out += "  linkStyle " + std::to_string(i) + " stroke:" + kRed + ",stroke-width:2px\n";
    }
  }
  return out;
}

std::string DotText(const Drawing& d) {
  auto id = [&](size_t i) {
    const auto& n = d.nodes[i];
    bool service = n.kind == NodeKind::kService || n.kind == NodeKind::kConflicted;
    return "\"" + std::string(service ? "service:" : "stream:") + DotEscape(n.name) + "\"";
  };
  std::string out = "digraph \"" + DotEscape(d.ns) + "\" {\n";
  out +=
      "  graph [rankdir=LR, fontname=\"Helvetica\", fontsize=11, labelloc=b, labeljust=l, "
      "nodesep=0.4, ranksep=0.9];\n";
  out += std::string("  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", ") +
         "fontsize=11, color=\"" + kBlue + "\", fillcolor=\"" + kBlueFill + "\"];\n";
  out += std::string("  edge [fontname=\"Helvetica\", fontsize=10, color=\"") + kGrey + "\"];\n";

  // The legend: the namespace, and a line per colour in use.
  std::string legend = "EventServices of namespace <b>" + HtmlEscape(d.ns) + "</b>";
  for (const auto& [text, colour] : Legend(d)) {
    legend += std::string("<br align=\"left\"/><font color=\"") + colour + "\">" +
              HtmlEscape(text) + "</font>";
  }
  out += "  label=<" + legend + "<br align=\"left\"/>>;\n";

  for (size_t i = 0; i < d.nodes.size(); ++i) {
    const auto& n = d.nodes[i];
    std::string label = DotEscape(n.name);
    for (const auto& note : n.notes) label += "\\n" + DotEscape(note);
    std::string attrs = "label=\"" + label + "\"";
    switch (n.kind) {
      case NodeKind::kService:
        break;
      case NodeKind::kConflicted:
        attrs += std::string(", color=\"") + kOrange + "\", fillcolor=\"" + kOrangeFill +
                 "\", penwidth=2";
        break;
      case NodeKind::kStream:
        attrs += std::string(", shape=cylinder, style=filled, color=\"") + kGrey +
                 "\", fillcolor=\"" + kGreyFill + "\"";
        break;
      case NodeKind::kMissing:
        attrs += std::string(", shape=cylinder, style=\"filled,dashed\", color=\"") + kRed +
                 "\", fillcolor=\"" + kRedFill + "\", penwidth=2";
        break;
    }
    out += "  " + id(i) + " [" + attrs + "];\n";
  }
  for (const auto& e : d.edges) {
    std::string attrs = "label=\"" + DotEscape(e.label) + "\"";
    if (e.kind == EdgeKind::kCycle) {
      attrs += std::string(", color=\"") + kRed + "\", fontcolor=\"" + kRed + "\", penwidth=2.5";
    } else if (e.kind == EdgeKind::kMissing) {
      attrs += std::string(", color=\"") + kRed + "\", fontcolor=\"" + kRed + "\", style=dashed";
    }
    out += "  " + id(e.from) + " -> " + id(e.to) + " [" + attrs + "];\n";
  }
  out += "}\n";
  return out;
}

}  // namespace sidelog::cli
