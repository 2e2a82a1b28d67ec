#include "client.h"

#include <cpprest/http_client.h>

namespace sidelog::cli {

using web::http::client::http_client;
using web::http::client::http_client_config;

Client::Client(std::string base_url) : base_url_(std::move(base_url)) {
  while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
}

Response Client::Send(const std::string& method, const std::string& path, const Json& body,
                      const std::map<std::string, std::string>& headers, std::string* error) {
  Response out;
  try {
    http_client_config cfg;
    cfg.set_timeout(std::chrono::seconds(30));
    http_client client(base_url_, cfg);
    web::http::http_request req(method);
    req.set_request_uri(path);
    for (const auto& [k, v] : headers) req.headers().add(k, v);
    if (!body.is_null()) req.set_body(body.dump(), "application/json");
    auto resp = client.request(req).get();
    out.status = resp.status_code();
    if (auto it = resp.headers().find("ETag"); it != resp.headers().end()) out.etag = it->second;
    auto bytes = resp.extract_vector().get();
    if (!bytes.empty()) {
      out.body = Json::parse(bytes.begin(), bytes.end(), nullptr, false);
      if (out.body.is_discarded()) out.body = std::string(bytes.begin(), bytes.end());
    }
  } catch (const std::exception& e) {
    if (error) *error = std::string("cannot reach the sidecar at ") + base_url_ + ": " + e.what();
    out.status = 0;
  }
  return out;
}

std::string Client::Follow(
    const std::string& path, const std::string& last_event_id,
    const std::function<bool(const std::string&, const std::string&, const Json&)>& on_event,
    const std::function<bool()>& keep_going) {
  try {
    http_client_config cfg;
    cfg.set_timeout(std::chrono::hours(24 * 365));
    http_client client(base_url_, cfg);
    web::http::http_request req(web::http::methods::GET);
    req.set_request_uri(path);
    req.headers().add("Accept", "text/event-stream");
    if (!last_event_id.empty()) req.headers().add("Last-Event-ID", last_event_id);
    auto resp = client.request(req).get();
    if (resp.status_code() != 200) {
      Response r;
      r.status = resp.status_code();
      auto bytes = resp.extract_vector().get();
      r.body = Json::parse(bytes.begin(), bytes.end(), nullptr, false);
      return ProblemText(r);
    }
    auto stream = resp.body();
    std::string id, type, data;
    for (;;) {
      concurrency::streams::container_buffer<std::string> line;
      size_t n = stream.read_line(line).get();
      const std::string& l = line.collection();
      if (n == 0 && l.empty() && stream.is_eof()) return "";
      if (keep_going && !keep_going()) return "";
      if (l.empty() || l == "\r") {  // end of one event
        if (!data.empty()) {
          Json j = Json::parse(data, nullptr, false);
          if (!on_event(id, type, j)) return "";
        }
        id.clear();
        type.clear();
        data.clear();
        continue;
      }
      if (l[0] == ':') continue;  // comment: heartbeat
      auto colon = l.find(':');
      std::string field = l.substr(0, colon);
      std::string value = colon == std::string::npos ? "" : l.substr(colon + 1);
      if (!value.empty() && value[0] == ' ') value.erase(0, 1);
      if (field == "id") id = value;
      if (field == "event") type = value;
      if (field == "data") data += value;
    }
  } catch (const std::exception& e) {
    return std::string("cannot follow ") + base_url_ + path + ": " + e.what();
  }
}

std::string ProblemText(const Response& r) {
  if (r.body.is_object() && r.body.contains("detail")) {
    std::string text = r.body.value("title", "Error") + " (" + std::to_string(r.status) +
                       "): " + r.body.value("detail", "");
    if (r.body.contains("currentVersion")) {
      text += " [current version " + r.body["currentVersion"].dump() + "]";
    }
    return text;
  }
  return "HTTP " + std::to_string(r.status) +
         (r.body.is_string() ? ": " + r.body.get<std::string>() : std::string());
}

}  // namespace sidelog::cli
