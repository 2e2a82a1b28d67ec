#include "app_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace sidelog::sidecar {

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Waits until `fd` is ready for `events` or the deadline passes; false on timeout.
bool WaitFd(int fd, short events, int64_t deadline_ms) {
  for (;;) {
    int64_t left = deadline_ms - NowMs();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int rc = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 60000)));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return true;  // let the read/write report it
  }
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

AppConnection::AppConnection(std::string host, int port) : host_(std::move(host)), port_(port) {}
AppConnection::~AppConnection() { Close(); }

void AppConnection::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  buffer_.clear();
}

bool AppConnection::Connect(int64_t deadline_ms, AppFailure* failure, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(port_);
  if (int rc = getaddrinfo(host_.c_str(), port.c_str(), &hints, &res); rc != 0) {
    *failure = AppFailure::kConnect;
    *error = "cannot resolve " + host_ + ": " + gai_strerror(rc);
    return false;
  }
  std::string last = "no address";
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int rc = connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc < 0 && errno == EINPROGRESS) {
      if (!WaitFd(fd, POLLOUT, deadline_ms)) {
        close(fd);
        freeaddrinfo(res);
        *failure = AppFailure::kConnect;
        *error = "connecting to the app at " + host_ + ":" + port + " timed out";
        return false;
      }
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      fd_ = fd;
      freeaddrinfo(res);
      return true;
    }
    last = strerror(errno);
    close(fd);
  }
  freeaddrinfo(res);
  *failure = AppFailure::kConnect;
  *error = "cannot connect to the app at " + host_ + ":" + port + ": " + last;
  return false;
}

bool AppConnection::Send(const std::string& request, int64_t timeout_ms, AppReply* reply,
                         AppFailure* failure, std::string* error) {
  const int64_t deadline = NowMs() + timeout_ms;
  *reply = AppReply();
  *failure = AppFailure::kNone;
  auto fail = [&](AppFailure f, std::string why) {
    Close();
    *failure = f;
    *error = std::move(why);
    return false;
  };
  // A kept-alive connection the app closed meanwhile fails at the first write or read; then
  // one new connection is tried, unless the request may have reached the app.
  for (int round = 0; round < 2; ++round) {
    const bool reused = fd_ >= 0;
    if (!reused && !Connect(deadline, failure, error)) return false;
    size_t sent = 0;
    bool broken = false;
    while (sent < request.size()) {
      ssize_t n = send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!WaitFd(fd_, POLLOUT, deadline)) return fail(AppFailure::kTimeout, "sending timed out");
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        broken = true;
        break;
      }
    }
    if (broken) {
      if (reused && sent == 0) {
        Close();
        continue;
      }
      return fail(AppFailure::kProtocol, std::string("the connection broke: ") + strerror(errno));
    }
    // Read the head.
    size_t head_end;
    bool got_any = !buffer_.empty();
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (buffer_.size() > 64 * 1024)
        return fail(AppFailure::kProtocol, "the answer's head is too long");
      char chunk[16384];
      ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
      if (n > 0) {
        buffer_.append(chunk, static_cast<size_t>(n));
        got_any = true;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!WaitFd(fd_, POLLIN, deadline)) {
          return fail(AppFailure::kTimeout,
                      "no answer within " + std::to_string(timeout_ms) + "ms");
        }
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        if (reused && !got_any) {  // closed by the app while idle: say it again
          Close();
          broken = true;
          break;
        }
        return fail(AppFailure::kProtocol, "the app closed the connection without an answer");
      }
    }
    if (broken) continue;
    const std::string head = buffer_.substr(0, head_end);
    buffer_.erase(0, head_end + 4);
    // Status line: HTTP/1.x NNN reason
    size_t line_end = head.find("\r\n");
    std::string status_line = head.substr(0, line_end);
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) {
      return fail(AppFailure::kProtocol,
                  "the answer is not HTTP/1.x: " + status_line.substr(0, 60));
    }
    reply->status = std::atoi(status_line.c_str() + 9);
    bool keep_alive = status_line.compare(0, 8, "HTTP/1.1") == 0;
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      if (e == std::string::npos) e = head.size();
      std::string line = head.substr(pos, e - pos);
      pos = e + 2;
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = Lower(line.substr(0, colon));
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      value.erase(value.find_last_not_of(" \t") + 1);
      reply->headers[name] = value;
    }
    if (auto it = reply->headers.find("connection"); it != reply->headers.end()) {
      const std::string v = Lower(it->second);
      if (v.find("close") != std::string::npos) keep_alive = false;
      if (v.find("keep-alive") != std::string::npos) keep_alive = true;
    }
    auto read_more = [&]() -> int {  // 1 read, 0 closed, -1 timeout or error
      char chunk[16384];
      for (;;) {
        ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
        if (n > 0) {
          buffer_.append(chunk, static_cast<size_t>(n));
          return 1;
        }
        if (n == 0) return 0;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        if (!WaitFd(fd_, POLLIN, deadline)) return -1;
      }
    };
    constexpr size_t kMaxBody = 1 << 20;  // what the sidecar reads of an answer
    auto te = reply->headers.find("transfer-encoding");
    auto cl = reply->headers.find("content-length");
    if (reply->status == 204 || reply->status == 304 ||
        (reply->status >= 100 && reply->status < 200)) {
      // no body
    } else if (te != reply->headers.end() &&
               Lower(te->second).find("chunked") != std::string::npos) {
      for (;;) {
        size_t e;
        while ((e = buffer_.find("\r\n")) == std::string::npos) {
          if (read_more() != 1)
            return fail(AppFailure::kTimeout, "the answer's body did not complete");
        }
        const size_t size = std::strtoul(buffer_.c_str(), nullptr, 16);
        buffer_.erase(0, e + 2);
        if (size == 0) {  // trailers end with an empty line
          while ((e = buffer_.find("\r\n")) == std::string::npos) {
            if (read_more() != 1)
              return fail(AppFailure::kProtocol, "the chunked body did not end");
          }
          buffer_.erase(0, e + 2);
          break;
        }
        while (buffer_.size() < size + 2) {
          if (read_more() != 1)
            return fail(AppFailure::kTimeout, "the answer's body did not complete");
        }
        if (reply->body.size() < kMaxBody) reply->body.append(buffer_, 0, size);
        buffer_.erase(0, size + 2);
      }
    } else if (cl != reply->headers.end()) {
      const size_t length = std::strtoul(cl->second.c_str(), nullptr, 10);
      while (buffer_.size() < length) {
        if (read_more() != 1)
          return fail(AppFailure::kTimeout, "the answer's body did not complete");
      }
      reply->body = buffer_.substr(0, std::min(length, kMaxBody));
      buffer_.erase(0, length);
    } else {  // until the app closes the connection
      int rc;
      while ((rc = read_more()) == 1) {
        if (buffer_.size() > kMaxBody) break;
      }
      reply->body = buffer_;
      keep_alive = false;
    }
    if (!keep_alive) Close();
    return true;
  }
  return fail(AppFailure::kProtocol, "the app closed the connection without an answer");
}

}  // namespace sidelog::sidecar
