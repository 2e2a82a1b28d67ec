// DependencyGraph: the EventServices of one namespace resolved against its EventStreams. It
// answers, for each service, which listed streams do not exist, which Single-producer streams
// it lists in produces but another service keeps, whom it depends on and who depends on it
// (through which streams), and which dependency cycles pass through it.
//
// It is a pure function of its input: no I/O, no clock. The EventService reconciler builds one
// per reconcile of a namespace and writes the answers into each service's status; the CLI's
// `sidelog graph` draws it.
//
// Direction: service A depends on service B when A consumes a stream that B effectively
// produces. Cycles are written in that direction: {"a", "b", "c"}, or "a -> b -> c -> a",
// means a depends on b, b on c and c on a.
//
// Cycle policy (EventService spec, applied by the caller, not here):
//   allow  cycles are ignored: DependenciesResolved does not mention them.
//   warn   DependenciesResolved stays True; the cycles are listed in status.cycles and each is
//          reported as a Warning Event on the service.
//   deny   DependenciesResolved=False with reason CycleDetected, naming the cycles.
//
// Threading: a DependencyGraph is immutable once built; any number of threads may read one.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "kube_client.h"  // for sidelog::op::Json (nlohmann::json)

namespace sidelog::op {

// Where the API serves EventServices (EventStreams: kEventStreams, eventstream_reconciler.h).
extern const ResourceType kEventServices;

enum class CyclePolicy { kAllow, kWarn, kDeny };

// "allow", "warn", "deny" -> policy; false (and *policy untouched) when the text is none of them.
bool ParseCyclePolicy(const std::string& text, CyclePolicy* policy);
// The policy's text: "allow", "warn" or "deny".
const char* CyclePolicyName(CyclePolicy policy);

// A stream a service reads; `types` empty means every type.
struct ConsumedStream {
  std::string stream;
  std::vector<std::string> types;
};

struct ServiceNode {
  std::string name;
  std::string creation_timestamp;        // RFC 3339 (metadata.creationTimestamp), may be empty
  std::vector<std::string> produces;     // spec.produces
  std::vector<ConsumedStream> consumes;  // spec.consumes
};

struct StreamNode {
  std::string name;
  bool single_producer = true;  // spec.producerPolicy != "Multiple" (default Single)
};

// One service this one depends on (it produces streams this one consumes), or one that depends
// on this one; `streams` sorted and unique.
struct Dependency {
  std::string service;
  std::vector<std::string> streams;

  bool operator==(const Dependency&) const = default;
};

// A Single-producer stream this service lists in produces and another, older service keeps.
struct ProducerConflict {
  std::string stream;
  std::string owner;

  bool operator==(const ProducerConflict&) const = default;
};

struct ServiceResolution {
  // Listed (in produces or consumes) but no EventStream has the name; sorted, unique.
  std::vector<std::string> missing_streams;
  // Sorted by stream.
  std::vector<ProducerConflict> conflicts;
  // The elementary cycles through this service, each starting at this service ({"a", "b"}
  // means a -> b -> a; {"a"} alone means a consumes a stream it produces itself); sorted.
  std::vector<std::vector<std::string>> cycles;
  // The services this one depends on, sorted by service. A service that consumes a stream it
  // produces itself is its own dependency and its own dependent.
  std::vector<Dependency> dependencies;
  // The services that depend on this one, sorted by service: the reverse of dependencies.
  std::vector<Dependency> dependents;
};

class DependencyGraph {
 public:
  // At most this many cycles are enumerated in all (Johnson's algorithm stops there), so a
  // namespace whose services are densely interdependent still resolves in milliseconds.
  static constexpr size_t kMaxCycles = 100;

  // Names are unique within a namespace; of two nodes with the same name, the first is kept.
  // Empty names are ignored, as are repeated entries within one service's produces or consumes
  // (the types of repeated consumes of one stream are merged).
  DependencyGraph(std::vector<StreamNode> streams, std::vector<ServiceNode> services);
  // From EventStream and EventService objects as the Kubernetes API returns them (JSON):
  // metadata.name, metadata.creationTimestamp, spec.producerPolicy, spec.produces and
  // spec.consumes[].{stream,types}. Fields of the wrong type count as absent. Every object
  // given counts, whatever its namespace or deletionTimestamp: the caller picks them.
  static DependencyGraph FromObjects(const std::vector<Json>& streams,
                                     const std::vector<Json>& services);

  // The resolution of one service; null if there is no service of that name. The pointer is
  // valid as long as the graph.
  const ServiceResolution* Find(const std::string& service) const;
  // Every service's resolution, by name.
  const std::map<std::string, ServiceResolution>& services() const { return resolutions_; }
  // Every elementary cycle once, each rotated to start at its smallest name; sorted.
  const std::vector<std::vector<std::string>>& cycles() const { return cycles_; }
  // True when there were more than kMaxCycles cycles: cycles() (and each service's) holds the
  // kMaxCycles found first, those through the smallest names.
  bool cycles_truncated() const { return cycles_truncated_; }

  // The effective producers of a stream, sorted: for a Single stream the service that keeps it
  // (the oldest of those listing it in produces, by creation_timestamp, where an empty or
  // unreadable one counts as newest, ties broken by name); for a Multiple stream every service
  // listing it; none for a stream without an EventStream or without producers.
  std::vector<std::string> ProducersOf(const std::string& stream) const;
  // Whether an EventStream of that name was given.
  bool HasStream(const std::string& stream) const { return streams_.count(stream) > 0; }

  // The input, by name, as kept (first of each name, repeated entries merged).
  const std::map<std::string, StreamNode>& stream_nodes() const { return streams_; }
  const std::map<std::string, ServiceNode>& service_nodes() const { return nodes_; }

  // "a -> b -> a" ({"a"}: "a -> a"; {}: "").
  static std::string CycleText(const std::vector<std::string>& cycle);

 private:
  void ResolveProducers();
  void ResolveEdges();
  void FindCycles();

  std::map<std::string, StreamNode> streams_;
  std::map<std::string, ServiceNode> nodes_;
  std::map<std::string, std::vector<std::string>> producers_;  // effective, by stream; sorted
  std::map<std::string, ServiceResolution> resolutions_;
  std::vector<std::vector<std::string>> cycles_;
  bool cycles_truncated_ = false;
};

}  // namespace sidelog::op
