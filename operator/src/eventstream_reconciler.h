// EventStreamReconciler: keeps each EventStream's JetStream stream as its spec says.
//
//  - Creates the stream SIDELOG_<namespace>_<name> (subjects sidelog.<namespace>.<name>.>),
//    adopts one that already exists, and updates one whose limits, replicas or duplicate
//    window drifted from the spec (edited by hand or by the spec).
//  - Never recreates a stream that held data: once status.jetStream.lastPosition was above 0,
//    a missing stream (or one whose last position went backwards) is StreamLost, because a new
//    stream would hand out the same positions again.
//  - A change JetStream refuses is a condition (UnsupportedChange), not a crash loop.
//  - A finalizer honours deletionPolicy: Retain keeps the stream and needs no NATS; Delete
//    removes it, retrying with backoff while NATS is away (the annotation
//    sidelog.dev/skip-cleanup: "true" lets the object go without it).
//
// Status: observedGeneration, a Ready condition with reasons Created, Updated, Adopted,
// Reconciled, NatsUnavailable, InvalidSpec, UnsupportedChange, StreamLost, DeletionFailed,
// and jetStream {name, subjects, events, bytes, firstPosition, lastPosition}.
#pragma once

#include "conditions.h"
#include "controller.h"
#include "event_recorder.h"
#include "informer.h"
#include "sidelog/jetstream.h"

namespace sidelog::op {

extern const ResourceType kEventStreams;
inline constexpr const char* kEventStreamFinalizer = "sidelog.dev/jetstream";
inline constexpr const char* kSkipCleanupAnnotation = "sidelog.dev/skip-cleanup";

// The JetStream configuration an EventStream's spec asks for. Invalid, naming the field, when
// a value cannot be mapped (the CRD's schema refuses most of these before they get here).
Result<JetStreamConfig> DesiredJetStream(const std::string& ns, const std::string& name,
                                         const Json& spec);

class EventStreamReconciler : public Reconciler {
 public:
  // `client` is the Manager's (writes are observed by `informer`).
  EventStreamReconciler(KubeApi* client, Informer* informer, JetStream* js,
                        EventRecorder* recorder);

  Result<ReconcileResult> Reconcile(const std::string& key) override;

 private:
  // Converges the stream; fills `ready` and `js_status` (left untouched when unknown).
  Status Converge(const std::string& ns, const std::string& name, const Json& object,
                  Condition* ready, Json* js_status);
  Result<ReconcileResult> Finalize(const Json& object);
  // Writes status when it differs from the object's, and records an Event when the Ready
  // condition changes status or reason.
  Status WriteStatus(const Json& object, const Condition& ready, const Json& js_status);
  Result<Json> SetFinalizer(const Json& object, bool present);

  KubeApi* client_;
  Informer* informer_;
  JetStream* js_;
  EventRecorder* recorder_;
};

}  // namespace sidelog::op
