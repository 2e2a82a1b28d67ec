// sidelog-jetstream-tool: looks at and tampers with JetStream streams, for the e2e tests (a
// stand-in for the nats CLI, which is not packaged).
//
//   sidelog-jetstream-tool --nats URL info STREAM       JSON: {"exists":..., "config":{...}, ...}
//   sidelog-jetstream-tool --nats URL delete STREAM
//   sidelog-jetstream-tool --nats URL publish SUBJECT DATA
//   sidelog-jetstream-tool --nats URL set STREAM FIELD VALUE maxAgeSeconds|maxMsgs|maxBytes|discard
//   sidelog-jetstream-tool --nats URL create STREAM SUBJECTS [memory]
//
// Exit 0 on success, 1 on an error (printed), 2 on bad usage.
#include <nlohmann/json.hpp>

#include <chrono>
#include <iostream>
#include <thread>

#include "sidelog/jetstream.h"

using sidelog::JetStream;
using Json = nlohmann::json;

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  sidelog::NatsConfig config;
  if (args.size() >= 2 && args[0] == "--nats") {
    config.url = args[1];
    args.erase(args.begin(), args.begin() + 2);
  }
  if (config.url.empty() || args.size() < 2) {
    std::cerr << "usage: sidelog-jetstream-tool --nats URL info|delete|publish|set|create ...\n";
    return 2;
  }
  auto js = JetStream::Connect(config, nullptr);
  if (!js.ok()) {
    std::cerr << js.status().message() << "\n";
    return 1;
  }
  for (int i = 0; i < 100 && !(*js)->connected(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const std::string& cmd = args[0];
  auto fail = [](const sidelog::Status& s) {
    std::cerr << s.message() << "\n";
    return 1;
  };
  if (cmd == "info") {
    auto info = (*js)->Info(args[1]);
    if (!info.ok() && info.status().code() != sidelog::Status::Code::kNotFound)
      return fail(info.status());
    Json out = {{"exists", info.ok()}};
    if (info.ok()) {
      const auto& c = info->config;
      out["config"] = {{"subjects", c.subjects},
                       {"maxAgeSeconds", c.max_age_ns / 1000000000},
                       {"maxBytes", c.max_bytes},
                       {"maxMsgs", c.max_msgs},
                       {"discard", c.discard_new ? "new" : "old"},
                       {"replicas", c.replicas},
                       {"storage", c.memory_storage ? "memory" : "file"},
                       {"duplicateWindowSeconds", c.duplicate_window_ns / 1000000000}};
      out["messages"] = info->messages;
      out["lastSeq"] = info->last_seq;
    }
    std::cout << out.dump() << "\n";
    return 0;
  }
  if (cmd == "delete") {
    auto s = (*js)->DeleteStream(args[1]);
    return s.ok() ? 0 : fail(s);
  }
  if (cmd == "create" && (args.size() == 3 || (args.size() == 4 && args[3] == "memory"))) {
    sidelog::JetStreamConfig c;
    c.name = args[1];
    c.subjects = {args[2]};
    c.memory_storage = args.size() == 4;
    auto s = (*js)->CreateStream(c);
    return s.ok() ? 0 : fail(s);
  }
  if (cmd == "publish" && args.size() == 3) {
    static int n = 0;
    std::string id = "tool-" +
                     std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) +
                     "-" + std::to_string(n++);
    // Expected last subject sequence: whatever is there (publish on a fresh subject per call).
    auto r = (*js)->Publish(args[1], id, 0, "application/json", args[2], 5000);
    if (!r.ok()) return fail(r.status());
    std::cout << r->seq << "\n";
    return 0;
  }
  if (cmd == "set" && args.size() == 4) {
    auto info = (*js)->Info(args[1]);
    if (!info.ok()) return fail(info.status());
    auto c = info->config;
    const std::string& field = args[2];
    const std::string& value = args[3];
    if (field == "maxAgeSeconds") {
      c.max_age_ns = std::stoll(value) * 1000000000;
      if (c.duplicate_window_ns > c.max_age_ns && c.max_age_ns > 0)
        c.duplicate_window_ns = c.max_age_ns;
    } else if (field == "maxMsgs") {
      c.max_msgs = std::stoll(value);
    } else if (field == "maxBytes") {
      c.max_bytes = std::stoll(value);
    } else if (field == "discard") {
      c.discard_new = value == "new";
    } else {
      std::cerr << "unknown field " << field << "\n";
      return 2;
    }
    auto s = (*js)->UpdateStream(c);
    return s.ok() ? 0 : fail(s);
  }
  std::cerr << "unknown command " << cmd << "\n";
  return 2;
}
