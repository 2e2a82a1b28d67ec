#include "dependency_graph.h"

#include <algorithm>
#include <functional>
#include <set>
#include <tuple>
#include <utility>

#include "sidelog/event.h"

namespace sidelog::op {

const ResourceType kEventServices{"sidelog.dev", "v1alpha1", "eventservices", "EventService", true};

bool ParseCyclePolicy(const std::string& text, CyclePolicy* policy) {
  if (text == "allow") {
    *policy = CyclePolicy::kAllow;
  } else if (text == "warn") {
    *policy = CyclePolicy::kWarn;
  } else if (text == "deny") {
    *policy = CyclePolicy::kDeny;
  } else {
    return false;
  }
  return true;
}

const char* CyclePolicyName(CyclePolicy policy) {
  switch (policy) {
    case CyclePolicy::kAllow:
      return "allow";
    case CyclePolicy::kWarn:
      return "warn";
    case CyclePolicy::kDeny:
      return "deny";
  }
  return "warn";
}

namespace {

void SortUnique(std::vector<std::string>* v) {
  std::sort(v->begin(), v->end());
  v->erase(std::unique(v->begin(), v->end()), v->end());
}

// Appends the items of `from` that `to` lacks, keeping their order.
void AppendNew(const std::vector<std::string>& from, std::vector<std::string>* to) {
  for (const auto& item : from) {
    if (std::find(to->begin(), to->end(), item) == to->end()) to->push_back(item);
  }
}

// A service's claim to a Single stream: the oldest wins. A missing or unreadable creation time
// counts as newest; equal ages go to the smaller name.
using Age = std::tuple<bool, TimeMicros, std::string>;  // {time unknown, time, name}

Age AgeOf(const ServiceNode& node) {
  if (!node.creation_timestamp.empty()) {
    auto t = ParseTime(node.creation_timestamp);
    if (t.ok()) return {false, *t, node.name};
  }
  return {true, 0, node.name};
}

const Json& Member(const Json& object, const char* key) {
  static const Json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

std::string StringMember(const Json& object, const char* key) {
  const Json& j = Member(object, key);
  return j.is_string() ? j.get<std::string>() : "";
}

std::vector<std::string> StringItems(const Json& array) {
  std::vector<std::string> out;
  if (!array.is_array()) return out;
  for (const auto& item : array) {
    if (item.is_string()) out.push_back(item.get<std::string>());
  }
  return out;
}

// The repeated entries of a service merged: produces sorted and unique, consumes one entry per
// stream (sorted by stream), whose types are the union of its entries' types in the order
// first given, or empty (every type) when any entry reads every type.
void Normalize(ServiceNode* node) {
  node->produces.erase(std::remove(node->produces.begin(), node->produces.end(), ""),
                       node->produces.end());
  SortUnique(&node->produces);
  std::map<std::string, ConsumedStream> merged;
  for (auto& c : node->consumes) {
    if (c.stream.empty()) continue;
    auto [it, inserted] = merged.try_emplace(c.stream, c);
    if (inserted) continue;
    if (it->second.types.empty() || c.types.empty()) {
      it->second.types.clear();
    } else {
      AppendNew(c.types, &it->second.types);
    }
  }
  node->consumes.clear();
  for (auto& [stream, c] : merged) {
    std::vector<std::string> types;
    AppendNew(c.types, &types);
    node->consumes.push_back({stream, std::move(types)});
  }
}

// A directed graph on vertices 0..n-1: adjacency lists.
using Graph = std::vector<std::vector<int>>;

// The strongly connected component of each vertex (Tarjan), numbered from 0. Recursion depth is
// at most the number of vertices.
std::vector<int> StrongComponents(const Graph& adj) {
  const size_t n = adj.size();
  std::vector<int> order(n, -1), low(n, 0), component(n, -1), stack;
  std::vector<bool> on_stack(n, false);
  int counter = 0, components = 0;
  std::function<void(int)> connect = [&](int v) {
    order[v] = low[v] = counter++;
    stack.push_back(v);
    on_stack[v] = true;
    for (int w : adj[v]) {
      if (order[w] < 0) {
        connect(w);
        low[v] = std::min(low[v], low[w]);
      } else if (on_stack[w]) {
        low[v] = std::min(low[v], order[w]);
      }
    }
    if (low[v] != order[v]) return;
    int w;
    do {
      w = stack.back();
      stack.pop_back();
      on_stack[w] = false;
      component[w] = components;
    } while (w != v);
    ++components;
  };
  for (size_t v = 0; v < n; ++v) {
    if (order[v] < 0) connect(static_cast<int>(v));
  }
  return component;
}

// The elementary cycles of a graph, at most `limit` of them (Johnson, "Finding all the
// elementary circuits of a directed graph", 1975). A vertex alone in its strongly connected
// component, without a self-edge, lies on no cycle and is skipped, so chains and stars cost
// one linear pass. From each remaining start s in turn, the search runs within the vertices
// >= s of s's component that are reachable from s and reach s; each cycle is found once, from
// its smallest vertex, and lists it first. Between two cycles found the search does linear
// work, so the limit bounds the time.
class ElementaryCycles {
 public:
  ElementaryCycles(const Graph& adj, size_t limit)
      : adj_(adj), limit_(limit), component_(StrongComponents(adj)), reverse_(adj.size()) {
    const size_t n = adj.size();
    std::vector<int> size(n, 0);
    for (size_t v = 0; v < n; ++v) {
      ++size[component_[v]];
      for (int w : adj[v]) reverse_[w].push_back(static_cast<int>(v));
    }
    in_search_.resize(n);
    blocked_.resize(n);
    blocked_by_.resize(n);
    for (size_t v = 0; v < n && !truncated_; ++v) {
      const int s = static_cast<int>(v);
      const bool self_edge = std::find(adj[v].begin(), adj[v].end(), s) != adj[v].end();
      if (size[component_[v]] == 1 && !self_edge) continue;
      std::vector<bool> forward = Reach(s, adj_), backward = Reach(s, reverse_);
      for (size_t u = 0; u < n; ++u) {
        in_search_[u] = forward[u] && backward[u];
        blocked_[u] = false;
        blocked_by_[u].clear();
      }
      Circuit(s, s);
    }
  }

  const std::vector<std::vector<int>>& cycles() const { return cycles_; }
  bool truncated() const { return truncated_; }

 private:
  // The vertices >= s of s's component reachable from s along `edges`.
  std::vector<bool> Reach(int s, const Graph& edges) const {
    std::vector<bool> seen(edges.size(), false);
    std::vector<int> todo{s};
    seen[s] = true;
    while (!todo.empty()) {
      int v = todo.back();
      todo.pop_back();
      for (int w : edges[v]) {
        if (!seen[w] && w >= s && component_[w] == component_[s]) {
          seen[w] = true;
          todo.push_back(w);
        }
      }
    }
    return seen;
  }

  // Extends the path by v; true when some cycle back to s was closed beyond it. Recursion
  // depth is at most the size of the component.
  bool Circuit(int s, int v) {
    bool closed = false;
    path_.push_back(v);
    blocked_[v] = true;
    for (int w : adj_[v]) {
      if (truncated_) break;
      if (!in_search_[w]) continue;
      if (w == s) {
        if (cycles_.size() == limit_) {
          truncated_ = true;
          break;
        }
        cycles_.push_back(path_);
        closed = true;
      } else if (!blocked_[w] && Circuit(s, w)) {
        closed = true;
      }
    }
    if (closed) {
      Unblock(v);
    } else {
      for (int w : adj_[v]) {
        if (in_search_[w]) blocked_by_[w].insert(v);
      }
    }
    path_.pop_back();
    return closed;
  }

  void Unblock(int u) {
    blocked_[u] = false;
    std::set<int> waiting;
    waiting.swap(blocked_by_[u]);
    for (int w : waiting) {
      if (blocked_[w]) Unblock(w);
    }
  }

  const Graph& adj_;
  const size_t limit_;
  const std::vector<int> component_;
  Graph reverse_;
  std::vector<bool> in_search_, blocked_;
  std::vector<std::set<int>> blocked_by_;
  std::vector<int> path_;
  std::vector<std::vector<int>> cycles_;
  bool truncated_ = false;
};

}  // namespace

DependencyGraph::DependencyGraph(std::vector<StreamNode> streams,
                                 std::vector<ServiceNode> services) {
  for (StreamNode& s : streams) {
    if (s.name.empty() || streams_.count(s.name) > 0) continue;
    std::string name = s.name;
    streams_[name] = std::move(s);
  }
  for (auto& node : services) {
    if (node.name.empty() || nodes_.count(node.name) > 0) continue;
    Normalize(&node);
    resolutions_[node.name];
    std::string name = node.name;
    nodes_.emplace(std::move(name), std::move(node));
  }
  ResolveProducers();
  ResolveEdges();
  FindCycles();
}

DependencyGraph DependencyGraph::FromObjects(const std::vector<Json>& streams,
                                             const std::vector<Json>& services) {
  std::vector<StreamNode> stream_nodes;
  for (const auto& object : streams) {
    StreamNode s;
    s.name = StringMember(Member(object, "metadata"), "name");
    s.single_producer = StringMember(Member(object, "spec"), "producerPolicy") != "Multiple";
    stream_nodes.push_back(std::move(s));
  }
  std::vector<ServiceNode> service_nodes;
  for (const auto& object : services) {
    const Json& metadata = Member(object, "metadata");
    const Json& spec = Member(object, "spec");
    ServiceNode node;
    node.name = StringMember(metadata, "name");
    node.creation_timestamp = StringMember(metadata, "creationTimestamp");
    node.produces = StringItems(Member(spec, "produces"));
    const Json& consumes = Member(spec, "consumes");
    if (consumes.is_array()) {
      for (const auto& c : consumes) {
        node.consumes.push_back({StringMember(c, "stream"), StringItems(Member(c, "types"))});
      }
    }
    service_nodes.push_back(std::move(node));
  }
  return DependencyGraph(std::move(stream_nodes), std::move(service_nodes));
}

const ServiceResolution* DependencyGraph::Find(const std::string& service) const {
  auto it = resolutions_.find(service);
  return it == resolutions_.end() ? nullptr : &it->second;
}

std::vector<std::string> DependencyGraph::ProducersOf(const std::string& stream) const {
  auto it = producers_.find(stream);
  return it == producers_.end() ? std::vector<std::string>{} : it->second;
}

std::string DependencyGraph::CycleText(const std::vector<std::string>& cycle) {
  if (cycle.empty()) return "";
  std::string text;
  for (const auto& name : cycle) text += name + " -> ";
  return text + cycle.front();
}

// Missing streams, and who keeps each Single stream.
void DependencyGraph::ResolveProducers() {
  std::map<std::string, std::vector<const ServiceNode*>> listed;  // stream -> services, by name
  for (const auto& [name, node] : nodes_) {
    ServiceResolution& r = resolutions_[name];
    for (const auto& stream : node.produces) {
      if (HasStream(stream)) {
        listed[stream].push_back(&node);
      } else {
        r.missing_streams.push_back(stream);
      }
    }
    for (const auto& c : node.consumes) {
      if (!HasStream(c.stream)) r.missing_streams.push_back(c.stream);
    }
    SortUnique(&r.missing_streams);
  }
  for (const auto& [stream, nodes] : listed) {
    std::vector<std::string>& producers = producers_[stream];
    if (!streams_.at(stream).single_producer) {
      for (const ServiceNode* node : nodes) producers.push_back(node->name);
      continue;
    }
    const ServiceNode* owner = *std::min_element(
        nodes.begin(), nodes.end(),
        [](const ServiceNode* a, const ServiceNode* b) { return AgeOf(*a) < AgeOf(*b); });
    producers.push_back(owner->name);
    for (const ServiceNode* node : nodes) {
      if (node != owner) resolutions_[node->name].conflicts.push_back({stream, owner->name});
    }
  }
  // `listed` is walked in stream order, so each service's conflicts are sorted already.
}

// Dependencies and dependents: one per pair of services, with the streams between them.
void DependencyGraph::ResolveEdges() {
  for (const auto& [name, node] : nodes_) {
    std::map<std::string, std::vector<std::string>> by_producer;
    for (const auto& c : node.consumes) {
      auto it = producers_.find(c.stream);
      if (it == producers_.end()) continue;
      for (const auto& producer : it->second) by_producer[producer].push_back(c.stream);
    }
    for (auto& [producer, streams] : by_producer) {
      SortUnique(&streams);
      resolutions_[name].dependencies.push_back({producer, streams});
      // Services are walked in name order, so each dependents list comes out sorted.
      resolutions_[producer].dependents.push_back({name, streams});
    }
  }
}

// Services are numbered in name order; Johnson's algorithm finds each cycle from its smallest
// member, so every cycle starts at its smallest name.
void DependencyGraph::FindCycles() {
  std::vector<std::string> names;
  std::map<std::string, int> index;
  for (const auto& [name, node] : nodes_) {
    index[name] = static_cast<int>(names.size());
    names.push_back(name);
  }
  Graph adj(names.size());
  for (const auto& [name, r] : resolutions_) {
    for (const auto& d : r.dependencies) adj[index[name]].push_back(index[d.service]);
  }
  ElementaryCycles finder(adj, kMaxCycles);
  cycles_truncated_ = finder.truncated();

  for (const auto& cycle : finder.cycles()) {
    std::vector<std::string> named;
    named.reserve(cycle.size());
    for (int v : cycle) named.push_back(names[v]);
    for (size_t i = 0; i < named.size(); ++i) {
      std::vector<std::string> rotated(named.begin() + static_cast<std::ptrdiff_t>(i), named.end());
      rotated.insert(rotated.end(), named.begin(), named.begin() + static_cast<std::ptrdiff_t>(i));
      resolutions_[named[i]].cycles.push_back(std::move(rotated));
    }
    cycles_.push_back(std::move(named));
  }
  std::sort(cycles_.begin(), cycles_.end());
  for (auto& [name, r] : resolutions_) std::sort(r.cycles.begin(), r.cycles.end());
}

}  // namespace sidelog::op
