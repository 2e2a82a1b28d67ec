// A minimal HTTP/1.1 client over a plain socket, so tests control every byte: any Host header,
// any Content-Type, invalid UTF-8 bodies. One request per connection (Connection: close).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <string>

#include "sidelog/event.h"

namespace sidelog::testing {

struct RawResponse {
  int status = 0;          // 0: no answer
  bool connected = false;  // the request reached the server (status 0: its outcome is unknown)
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
  Json json() const { return Json::parse(body, nullptr, false); }
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

inline RawResponse RawRequest(int port, const std::string& method, const std::string& target,
                              const std::string& body = "",
                              std::map<std::string, std::string> headers = {}) {
  if (!headers.count("Host")) headers["Host"] = "127.0.0.1:" + std::to_string(port);
  if (!body.empty() && !headers.count("Content-Type")) headers["Content-Type"] = "application/json";
  std::string req = method + " " + target + " HTTP/1.1\r\n";
  for (const auto& [k, v] : headers) {
    if (!v.empty()) req += k + ": " + v + "\r\n";
  }
  req += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;

  RawResponse out;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return out;
  }
  out.connected = true;
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (size_t sent = 0; sent < req.size();) {
    ssize_t n = send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[65536];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
    // Stop once a Content-Length body is complete (the server may keep the connection open).
    auto end = raw.find("\r\n\r\n");
    if (end == std::string::npos) continue;
    std::string head = raw.substr(0, end);
    std::string lower = head;
    for (auto& c : lower) c = static_cast<char>(tolower(c));
    auto cl = lower.find("content-length:");
    if (cl != std::string::npos && raw.size() >= end + 4 + std::stoul(head.substr(cl + 15))) break;
  }
  close(fd);
  auto end = raw.find("\r\n\r\n");
  if (raw.size() < 12 || end == std::string::npos) return out;
  out.status = std::stoi(raw.substr(9, 3));
  size_t pos = raw.find("\r\n") + 2;
  while (pos < end) {
    size_t eol = raw.find("\r\n", pos);
    std::string line = raw.substr(pos, eol - pos);
    auto colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(tolower(c));
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      out.headers[name] = value;
    }
    pos = eol + 2;
  }
  out.body = raw.substr(end + 4);
  return out;
}

}  // namespace sidelog::testing
