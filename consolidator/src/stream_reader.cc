#include "stream_reader.h"

#include "jetstream_reader.h"

#include <cpprest/uri_builder.h>

#include <memory>

#include "client.h"
#include "sidelog/log.h"

namespace sidelog::consolidator {
namespace {

using web::http::client::http_client;
using web::http::client::http_client_config;

constexpr int kPageLimit = 1000;

// The sidecar sends an SSE heartbeat every 15 s by default; a connection silent for much
// longer than that is dead.
constexpr auto kFollowIdleTimeout = std::chrono::seconds(60);

// SSE subscriptions open one at a time per process. The sidecar's Feed::Subscribe waits on a
// task that needs a free thread of its (by default two-thread) pool: subscriptions arriving
// together can take every pool thread and hang the sidecar. Reported to the sidecar's owners;
// until it is fixed, a consolidator never opens two at once.
std::mutex subscribe_mu;

std::string ProblemDetail(const web::http::http_response& resp) {
  std::string body;
  try {
    body = resp.extract_utf8string(true).get();
  } catch (...) {
  }
  Json j = Json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("detail")) return j.value("detail", "");
  return body.substr(0, 200);
}

}  // namespace

StreamReader::StreamReader(std::string sidecar_url, std::string stream, EventQueue* queue)
    : url_(std::move(sidecar_url)), stream_(std::move(stream)), queue_(queue) {}

StreamReader::~StreamReader() { Stop(); }

void StreamReader::Start(Cursor after, const std::string& identity) {
  Stop();
  queue_->Reset();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
    cancel_ = pplx::cancellation_token_source();
  }
  thread_ = std::thread([this, after, identity] { Run(after, identity); });
}

void StreamReader::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cancel_.cancel();
  }
  wake_.notify_all();
  queue_->Close();  // a Push blocked on a full queue returns
  if (thread_.joinable()) thread_.join();
  following_ = false;
}

std::string StreamReader::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

void StreamReader::SetError(const std::string& error) {
  std::lock_guard<std::mutex> lock(mu_);
  last_error_ = error;
}

Status StreamReader::CheckIdentity(const std::string& identity) {
  if (identity.empty()) return Status::Ok();
  cli::Client client(url_);
  std::string error;
  auto resp = client.Send("GET", "/v1/streams", nullptr, {}, &error);
  if (resp.status == 0) return Status::Unavailable(error);
  if (resp.status != 200 || !resp.body.is_object() || !resp.body["streams"].is_array()) {
    return Status::Unavailable("GET " + url_ + "/v1/streams: " + cli::ProblemText(resp));
  }
  for (const auto& s : resp.body["streams"]) {
    if (!s.is_object() || s.value("name", "") != stream_) continue;
    const std::string now = s.value("identity", "");
    if (now.empty() || now == identity) return Status::Ok();
    return Status::Conflict("SourceReset: stream " + stream_ + " at " + url_ +
                            " is not the one the checkpoint belongs to (identity " + now +
                            ", recorded " + identity + "); nothing is read from it");
  }
  return Status::Ok();  // not served there: the read fails and says so
}

void StreamReader::Run(Cursor after, const std::string& identity) {
  auto backoff = std::chrono::seconds(1);
  for (;;) {
    Cursor before = after;
    Status st = CheckIdentity(identity);
    if (st.ok()) st = CatchUp(&after);
    if (st.ok()) {
      SetError("");
      following_ = true;
      st = Follow(&after);
      following_ = false;
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return;
    last_error_ = st.message();
    if (before < after) backoff = std::chrono::seconds(1);  // it made progress: retry soon
    log::Warn("reading the stream failed; retrying", {{"stream", stream_},
                                                      {"error", st.message()},
                                                      {"after", after.ToString()},
                                                      {"retryInSeconds", backoff.count()}});
    wake_.wait_for(lock, backoff, [&] { return stopping_; });
    if (stopping_) return;
    backoff = std::min(backoff * 2, std::chrono::seconds(30));
  }
}

Status StreamReader::Deliver(const Json& cloud_event, Cursor* after) {
  auto event = FromCloudEvent(cloud_event);
  if (!event.ok()) {
    return Status::Internal("the sidecar sent an event that does not parse: " +
                            event.status().message());
  }
  if (!after->Before(event->position, event->index)) return Status::Ok();  // already read
  Cursor at{event->position, event->index};
  if (!queue_->Push({std::move(event).value(), at})) return Status::Unavailable("stopped");
  *after = at;
  return Status::Ok();
}

Status StreamReader::CatchUp(Cursor* after) {
  http_client_config cfg;
  cfg.set_timeout(std::chrono::seconds(30));
  std::unique_ptr<http_client> client;  // one connection for every page
  try {
    client = std::make_unique<http_client>(url_, cfg);
  } catch (const std::exception& e) {
    return Status::Invalid("the sidecar URL " + url_ + " is not usable: " + e.what());
  }
  for (;;) {
    pplx::cancellation_token token = [&] {
      std::lock_guard<std::mutex> lock(mu_);
      return cancel_.get_token();
    }();
    if (token.is_canceled()) return Status::Unavailable("stopped");
    // `from` is exclusive; to resume inside a commit, read the whole commit again.
    int64_t from = after->index >= 0 ? after->position - 1 : after->position;
    web::uri_builder path("/v1/streams/" + stream_ + "/events");
    path.append_query("from", std::to_string(from)).append_query("limit", kPageLimit);
    Json body;
    try {
      auto resp = client->request(web::http::methods::GET, path.to_string(), token).get();
      if (resp.status_code() != 200) {
        return Status::Unavailable("GET " + path.to_string() + " answered " +
                                   std::to_string(resp.status_code()) + ": " + ProblemDetail(resp));
      }
      auto bytes = resp.extract_vector().get();
      body = Json::parse(bytes.begin(), bytes.end(), nullptr, false);
    } catch (const std::exception& e) {
      return Status::Unavailable("cannot read " + url_ + path.to_string() + ": " + e.what());
    }
    if (!body.is_object() || !body["events"].is_array() || !body["next"].is_number_integer()) {
      return Status::Internal("the sidecar's page of " + stream_ + " is not {events, next}");
    }
    for (const auto& ce : body["events"]) {
      if (auto st = Deliver(ce, after); !st.ok()) return st;
    }
    // Pages never split a commit: everything up to `next` has been read.
    Cursor next{body["next"].get<int64_t>(), -1};
    if (*after < next) {
      if (!queue_->Push({std::nullopt, next})) return Status::Unavailable("stopped");
      *after = next;
    }
    if (body["events"].size() < static_cast<size_t>(kPageLimit)) return Status::Ok();
  }
}

Status StreamReader::Follow(Cursor* after) {
  pplx::cancellation_token token = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    return cancel_.get_token();
  }();
  const std::string path = "/v1/streams/" + stream_ + "/events?follow=true";
  try {
    http_client_config cfg;
    cfg.set_timeout(kFollowIdleTimeout);
    http_client client(url_, cfg);
    web::http::http_request req(web::http::methods::GET);
    req.set_request_uri(path);
    req.headers().add("Accept", "text/event-stream");
    req.headers().add("Last-Event-ID", after->LastEventId());
    web::http::http_response resp;
    {
      std::lock_guard<std::mutex> one_at_a_time(subscribe_mu);
      resp = client.request(req, token).get();
    }
    if (resp.status_code() != 200) {
      return Status::Unavailable("GET " + path + " answered " + std::to_string(resp.status_code()) +
                                 ": " + ProblemDetail(resp));
    }
    auto body = resp.body();
    std::string data;
    for (;;) {
      concurrency::streams::container_buffer<std::string> line;
      size_t n = body.read_line(line).get();
      if (token.is_canceled()) return Status::Unavailable("stopped");
      const std::string& l = line.collection();
      if (n == 0 && l.empty() && body.is_eof()) {
        return Status::Unavailable("the sidecar ended the event stream");
      }
      if (l.empty() || l == "\r") {  // the end of one SSE event
        if (!data.empty()) {
          Json ce = Json::parse(data, nullptr, false);
          data.clear();
          if (ce.is_discarded())
            return Status::Internal("the sidecar sent an SSE event that is not JSON");
          if (auto st = Deliver(ce, after); !st.ok()) return st;
        }
        continue;
      }
      if (l.rfind("data:", 0) == 0) {
        data += l.substr(l.size() > 5 && l[5] == ' ' ? 6 : 5);
      }
      // id:, event:, retry: and comments (heartbeats) carry nothing the data does not.
    }
  } catch (const std::exception& e) {
    if (token.is_canceled()) return Status::Unavailable("stopped");
    return Status::Unavailable("following " + url_ + path + ": " + e.what());
  }
}

std::unique_ptr<SourceReader> MakeSourceReader(const ConsolidatorConfig& config,
                                               const std::string& stream, EventQueue* queue) {
  if (config.delivery == Delivery::kSidecar) {
    return std::make_unique<StreamReader>(config.sidecar_url, stream, queue);
  }
  return std::make_unique<JetStreamReader>(config, stream, queue);
}

}  // namespace sidelog::consolidator
