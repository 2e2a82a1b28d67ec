// The `events` column of a commit row (schema 2, schema.cc): a JSON array with one object per
// event, holding only what differs from event to event. Since schema 4 an event's "id" is left
// out when it is the first event's id plus the event's index.
#include "event_log_impl.h"

namespace sidelog {
namespace {

// Appends `s` as a JSON string. Ids, types, states and sources are validated UTF-8; only the
// characters JSON requires are escaped.
void AppendJsonString(std::string& out, const std::string& s) {
  static const char* const kHex = "0123456789abcdef";
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

}  // namespace

std::string EncodeCommitEvents(const std::vector<StoredEvent>& events, const std::string& source,
                               TimeMicros first_time, bool ids_are_run) {
  std::string out;
  out.reserve(events.size() * 160);
  out += '[';
  for (size_t i = 0; i < events.size(); ++i) {
    const StoredEvent& e = events[i];
    if (i > 0) out += ',';
    out += '{';
    if (i == 0 || !ids_are_run) {
      out += "\"id\":";
      AppendJsonString(out, e.id);
      out += ',';
    }
    out += "\"type\":";
    AppendJsonString(out, e.type);
    if (e.time != first_time) {
      out += ",\"time\":";
      out += std::to_string(e.time);
    }
    if (!e.state.empty()) {
      out += ",\"state\":";
      AppendJsonString(out, e.state);
    }
    if (e.source != source) {
      out += ",\"source\":";
      AppendJsonString(out, e.source);
    }
    if (!e.metadata.empty()) {
      out += ",\"metadata\":";
      out += Json(e.metadata).dump();
    }
    out += ",\"data\":";
    out += e.data.dump();
    out += '}';
  }
  out += ']';
  return out;
}

TimeMicros StoredEventTime(const Json& event, TimeMicros first_time) {
  auto time = event.find("time");
  if (time == event.end()) return first_time;
  if (time->is_number_unsigned()) return static_cast<TimeMicros>(time->get<uint64_t>());
  // A damaged row's float or string throws type_error here (a float's conversion to an
  // integer would be undefined beyond the range).
  return time->get_ref<const Json::number_integer_t&>();
}

Result<Json> ParseCommitEvents(std::string_view text, int64_t position) {
  Json events = Json::parse(text, nullptr, false);
  if (!events.is_array() || events.empty()) {
    return Status::Internal("the commit stored at position " + std::to_string(position) +
                            " cannot be read (its events are not a JSON array); the log file "
                            "is damaged");
  }
  return events;
}

Status DecodeCommitEvents(std::string_view text, const StoredCommit& commit, int64_t min_version,
                          const std::set<std::string>* types, std::vector<StoredEvent>* out) {
  auto events = ParseCommitEvents(text, commit.position);
  if (!events.ok()) return events.status();
  try {
    std::vector<std::string> run;  // the ids left out: the first one plus their index
    for (size_t i = 0; i < events->size(); ++i) {
      const int64_t version = commit.first_version + static_cast<int64_t>(i);
      if (version < min_version) continue;
      Json& e = (*events)[i];
      std::string type = e.at("type").get<std::string>();
      if (types != nullptr && !types->empty() && types->count(type) == 0) continue;
      StoredEvent se;
      se.stream = commit.stream;
      se.entity = commit.entity;
      se.position = commit.position;
      se.index = static_cast<int32_t>(i);
      se.version = version;
      if (auto id = e.find("id"); id != e.end()) {
        se.id = id->get<std::string>();
      } else {
        if (run.empty()) run = UuidRun((*events)[0].at("id").get<std::string>(), events->size());
        se.id = std::move(run[i]);
      }
      se.type = std::move(type);
      se.time = StoredEventTime(e, commit.first_time);
      se.data = std::move(e.at("data"));
      auto state = e.find("state");
      if (state != e.end()) se.state = state->get<std::string>();
      auto source = e.find("source");
      se.source = source != e.end() ? source->get<std::string>() : commit.source;
      auto meta = e.find("metadata");
      if (meta != e.end()) se.metadata = meta->get<Metadata>();
      out->push_back(std::move(se));
    }
  } catch (const Json::exception& x) {
    return Status::Internal("the commit stored at position " + std::to_string(commit.position) +
                            " cannot be read: " + x.what());
  }
  return Status::Ok();
}

}  // namespace sidelog
