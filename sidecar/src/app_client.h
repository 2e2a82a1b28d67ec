// AppConnection: one keep-alive HTTP/1.1 connection from the sidecar to its app, for push
// deliveries. Blocking, with a deadline per request; a failed request closes the connection and
// the next one reconnects. Not thread-safe: each delivery worker owns one.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace sidelog::sidecar {

struct AppReply {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lowercase
  std::string body;
};

enum class AppFailure {
  kNone,
  kConnect,   // nothing listens (or the connection was refused): the app is not up
  kTimeout,   // no complete answer before the deadline
  kProtocol,  // the connection broke, or the answer was not HTTP
};

class AppConnection {
 public:
  AppConnection(std::string host, int port);
  ~AppConnection();
  AppConnection(const AppConnection&) = delete;
  AppConnection& operator=(const AppConnection&) = delete;

  // Sends `request` (a complete HTTP/1.1 request: head and body) and reads the answer. On
  // failure returns false with `*failure` and `*error` set.
  bool Send(const std::string& request, int64_t timeout_ms, AppReply* reply, AppFailure* failure,
            std::string* error);

 private:
  bool Connect(int64_t deadline_ms, AppFailure* failure, std::string* error);
  void Close();

  std::string host_;
  int port_;
  int fd_ = -1;
  std::string buffer_;  // bytes read past the previous answer
};

}  // namespace sidelog::sidecar
