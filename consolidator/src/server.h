// Server: the consolidator's HTTP API, on `listen` (loopback by default):
//
//   GET  /v1/queries               the named queries and the parameters each takes
//   GET  /v1/queries/{name}?p=v    runs one: 200 {"rows": [{column: value}]}; 404 unknown query;
//                                  400 missing or unknown parameter
//   POST /v1/rebuild               starts a rebuild: 202 with the rebuild's status; 409 if one runs
//   GET  /v1/status                per source: position, lag (events, seconds), state, last
//                                  error; the rebuild's progress
//   GET  /livez /readyz /metrics   liveness, readiness (the live read model is open), Prometheus
//
// Errors are application/problem+json. While listening on loopback, requests whose Host is not
// a loopback name are refused (403), against DNS rebinding. Handlers run on the cpprestsdk
// pool; a query holds its thread for as long as the database takes.
#pragma once

#include <cpprest/http_listener.h>

#include <memory>
#include <string>

#include "consolidator.h"

namespace sidelog::consolidator {

class Server {
 public:
  Server(Consolidator* consolidator, std::string listen);
  ~Server();

  // Unavailable when the address cannot be bound.
  Status Start();
  void Stop();

 private:
  void Handle(const web::http::http_request& request);
  void Reply(const web::http::http_request& request, const std::string& route,
             const web::http::http_response& response);
  void ReplyJson(const web::http::http_request& request, const std::string& route, int status,
                 const Json& body);

  Consolidator* consolidator_;
  std::string listen_;
  std::string listen_host_;
  bool loopback_ = true;
  std::unique_ptr<web::http::experimental::listener::http_listener> listener_;
};

}  // namespace sidelog::consolidator
