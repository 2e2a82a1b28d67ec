// Fuzzes what a sidecar or a consolidator reads back, both of which may be damaged or hostile:
//  - a commit as JetStream delivers it (a CloudEvents batch, DecodeCommit), which a replica
//    stores and a consolidator applies: it decodes, or is refused with a message (the
//    replicator then stops the stream as Diverged); never a crash;
//  - a commit as the local log stores it (DecodeCommitEvents): a damaged row is an error.
// And one property: a batch that decodes survives the log's own encoding unchanged.
#include <string>
#include <vector>

#include "event_log_impl.h"
#include "fuzz_util.h"
#include "sidelog/event.h"
#include "sidelog/jetstream.h"
#include "sidelog/replicator.h"

using namespace sidelog;

namespace {

void RoundTrip(const std::vector<StoredEvent>& events) {
  std::vector<std::string_view> ids;
  ids.reserve(events.size());
  for (const auto& e : events) ids.emplace_back(e.id);
  const bool run = IsUuidRun(ids);
  const std::string text =
      EncodeCommitEvents(events, events.front().source, events.front().time, run);
  StoredCommit commit;
  commit.stream = events.front().stream;
  commit.entity = events.front().entity;
  commit.position = events.front().position;
  commit.first_version = 1;
  commit.source = events.front().source;
  commit.first_time = events.front().time;
  std::vector<StoredEvent> back;
  if (auto st = DecodeCommitEvents(text, commit, 0, nullptr, &back); !st.ok()) {
    fuzz::Fail("the log cannot read what it wrote: " + st.message() + "\n" + text.substr(0, 300));
  }
  if (back.size() != events.size()) fuzz::Fail("event count changed");
  for (size_t i = 0; i < events.size(); ++i) {
    const auto& a = events[i];
    const auto& b = back[i];
    if (a.id != b.id || a.type != b.type || a.data != b.data || a.source != b.source ||
        a.time != b.time || a.metadata != b.metadata || a.entity != b.entity) {
      fuzz::Fail("event " + std::to_string(i) + " changed through the log's encoding: " +
                 ToCloudEvent(a).dump() + " -> " + ToCloudEvent(b).dump());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(fuzz::Bytes(data, size));

  JetStreamMessage m;
  m.seq = 7;
  m.subject = "sidelog.shop.orders.o-1";
  m.data = text;
  auto events = DecodeCommit("orders", m);
  if (events.ok()) {
    if (events->empty()) fuzz::Fail("a commit decoded to no events");
    RoundTrip(*events);
  } else if (events.status().message().empty()) {
    fuzz::Fail("a refused commit says nothing");
  }

  StoredCommit commit;
  commit.stream = "orders";
  commit.entity = "o-1";
  commit.position = 7;
  commit.first_version = 1;
  commit.source = "/namespaces/shop/services/orders";
  commit.first_time = 1764150000000000;
  std::vector<StoredEvent> out;
  auto st = DecodeCommitEvents(text, commit, 0, nullptr, &out);
  if (!st.ok() && st.message().empty()) fuzz::Fail("a damaged row is refused without a message");
  return 0;
}
