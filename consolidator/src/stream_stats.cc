#include "stream_stats.h"

#include <thread>

#include "client.h"
#include "sidelog/names.h"

namespace sidelog::consolidator {

Result<std::map<std::string, StreamStats>> StreamStatsSource::Fetch() {
  return config_.delivery == Delivery::kSidecar ? FromSidecar() : FromJetStream();
}

Result<std::map<std::string, StreamStats>> StreamStatsSource::FromSidecar() {
  cli::Client client(config_.sidecar_url);
  std::string error;
  auto resp = client.Send("GET", "/v1/streams", nullptr, {}, &error);
  if (resp.status == 0) return Status::Unavailable(error);
  if (resp.status != 200 || !resp.body.is_object() || !resp.body["streams"].is_array()) {
    return Status::Unavailable("GET " + config_.sidecar_url +
                               "/v1/streams: " + cli::ProblemText(resp));
  }
  std::map<std::string, StreamStats> out;
  for (const auto& s : resp.body["streams"]) {
    if (!s.is_object()) continue;
    StreamStats st;
    st.events = s.value("events", int64_t{0});
    st.watermark = s.value("watermark", int64_t{0});
    st.last = st.watermark + std::max<int64_t>(0, s.value("replicationLag", int64_t{0}));
    st.identity = s.value("identity", "");
    out[s.value("name", "")] = st;
  }
  return out;
}

Result<std::map<std::string, StreamStats>> StreamStatsSource::FromJetStream() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!js_) {
    auto js = JetStream::Connect(*config_.nats, nullptr);
    if (!js.ok()) return js.status();
    js_ = std::move(js).value();
    for (int i = 0; i < 50 && !js_->connected(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::map<std::string, StreamStats> out;
  for (const auto& source : config_.sources) {
    auto info = js_->Info(JetStreamName(config_.ns, source.stream));
    if (!info.ok()) return info.status();
    StreamStats st;
    st.watermark = static_cast<int64_t>(info->last_seq);
    st.last = st.watermark;
    st.identity = "jetstream:" + std::to_string(info->created_ns);
    out[source.stream] = st;
  }
  return out;
}

}  // namespace sidelog::consolidator
