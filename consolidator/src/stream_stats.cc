#include "stream_stats.h"

#include "client.h"

namespace sidelog::consolidator {

Result<std::map<std::string, StreamStats>> FetchStreamStats(const std::string& sidecar_url) {
  cli::Client client(sidecar_url);
  std::string error;
  auto resp = client.Send("GET", "/v1/streams", nullptr, {}, &error);
  if (resp.status == 0) return Status::Unavailable(error);
  if (resp.status != 200 || !resp.body.is_object() || !resp.body["streams"].is_array()) {
    return Status::Unavailable("GET " + sidecar_url + "/v1/streams: " + cli::ProblemText(resp));
  }
  std::map<std::string, StreamStats> out;
  for (const auto& s : resp.body["streams"]) {
    if (!s.is_object()) continue;
    StreamStats st;
    st.events = s.value("events", int64_t{0});
    st.watermark = s.value("watermark", int64_t{0});
    out[s.value("name", "")] = st;
  }
  return out;
}

}  // namespace sidelog::consolidator
