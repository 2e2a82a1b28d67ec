// sidelog: the command-line client of a Sidelog sidecar ($SIDELOG_URL, default
// http://127.0.0.1:4380), of a consolidator for rebuilds ($SIDELOG_CONSOLIDATOR_URL), and of the
// cluster's custom resources for `graph`. Prints readable tables by default and JSON with
// -o json; exits 1 with the problem's detail when the sidecar refuses, 3 when it cannot be
// reached, 2 on bad usage. Installed as kubectl-sidelog it is a kubectl plugin
// (`kubectl sidelog graph`), which behaves the same.
#include <cpprest/uri.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <thread>
#include <vector>

#include "client.h"
#include "graph.h"

namespace {

using sidelog::Json;
using sidelog::cli::Client;
using sidelog::cli::ProblemText;
using sidelog::cli::Response;

const char* kUsage = R"(usage: sidelog [-o table|json] COMMAND ...

  append STREAM ENTITY TYPE [DATA] [--expect N|none|exists|any] [--id ID] [--meta k=v]...
                               append one event (DATA is JSON; an id is generated if not given,
                               so a retry with the same --id is safe)
  get STREAM ENTITY [--version N | --at RFC3339]
                               an entity's folded state
  events STREAM [ENTITY] [--from N] [--limit N] [--types A,B]
                               a stream's events after position N, or an entity's from version N
  tail -f STREAM [--from N] [--types A,B]
                               follow a stream live (Server-Sent Events)
  entities STREAM [--prefix P] [--limit N]
                               entity ids and versions
  streams                      configured streams with counts and positions
  status                       the sidecar's component status
  subscriptions [NAME]         push deliveries to the app: state, position, lag, delivered,
                               retried and parked counts
  parked NAME [--after ID] [--limit N]
                               a subscription's parked events with their last errors
  replay NAME [--id ID]...     deliver parked events again (all of them, or those ids)
  discard NAME ID              drop a parked event (the event stays in its stream)
  rebuild [--consolidator URL] [--wait false] [--cancel]
                               rebuild a consolidator's read model from position 0 and swap it
                               in, showing progress until it is done (--wait false: just ask;
                               --cancel: give up the rebuild under way, the live view stays)
  graph [-n NAMESPACE] [-f FILE_OR_DIR]... [--format mermaid|dot|svg|png] [-o FILE]
        [--cycles allow|warn|deny]
                               the dependency graph of a namespace's EventServices, from the
                               cluster or from manifests (sidelog graph --help)

environment: SIDELOG_URL (default http://127.0.0.1:4380), SIDELOG_CONSOLIDATOR_URL (default
http://127.0.0.1:4390)
)";

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> flags;
  std::string Flag(const std::string& name, const std::string& def = "") const {
    auto it = flags.find(name);
    return it == flags.end() || it->second.empty() ? def : it->second.back();
  }
  bool Has(const std::string& name) const { return flags.count(name) > 0; }
};

[[noreturn]] void UsageError(const std::string& msg, const char* usage = kUsage) {
  std::cerr << "sidelog: " << msg << "\n\n" << usage;
  std::exit(2);
}

std::string Enc(const std::string& s) { return web::uri::encode_data_string(s); }

// Prints the response, or the problem, and returns the exit code.
int Check(const Response& r, const std::string& transport_error) {
  if (r.status == 0) {
    std::cerr << "sidelog: " << transport_error << "\n";
    return 3;
  }
  if (r.status >= 400) {
    std::cerr << "sidelog: " << ProblemText(r) << "\n";
    return 1;
  }
  return 0;
}

std::string Pad(std::string s, size_t n) {
  if (s.size() > n) s = s.substr(0, n - 1) + "~";
  return s + std::string(n - s.size() + 1, ' ');
}

std::string Str(const Json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_null()) return "-";
  return j.dump();
}

void PrintEvents(const Json& events) {
  std::cout << Pad("POSITION", 10) << Pad("ENTITY", 20) << Pad("VERSION", 8) << Pad("TYPE", 20)
            << Pad("TIME", 28) << "DATA\n";
  for (const auto& e : events) {
    std::string pos = Str(e["sidelogposition"]) + "." + Str(e["sidelogindex"]);
    std::cout << Pad(pos, 10) << Pad(Str(e["subject"]), 20) << Pad(Str(e["sidelogversion"]), 8)
              << Pad(Str(e["type"]), 20) << Pad(Str(e["time"]), 28) << e["data"].dump() << "\n";
  }
}

int Append(Client& c, const Args& a, bool json_out) {
  if (a.positional.size() < 4 || a.positional.size() > 5) {
    UsageError("append needs STREAM ENTITY TYPE [DATA]");
  }
  Json data = Json::object();
  if (a.positional.size() == 5) {
    data = Json::parse(a.positional[4], nullptr, false);
    if (data.is_discarded()) UsageError("DATA is not valid JSON: " + a.positional[4]);
  }
  Json event = {{"type", a.positional[3]}, {"data", data}};
  // Always send an id, so that retrying this command can never store the event twice.
  event["id"] = a.Flag("id", sidelog::NewUuidV7());
  if (a.Has("meta")) {
    Json meta = Json::object();
    for (const auto& kv : a.flags.at("meta")) {
      auto eq = kv.find('=');
      if (eq == std::string::npos) UsageError("--meta needs key=value, got " + kv);
      meta[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    event["metadata"] = meta;
  }
  Json body = {{"events", Json::array({event})}};
  if (a.Has("expect")) {
    std::string e = a.Flag("expect");
    bool numeric = !e.empty() && e.find_first_not_of("0123456789") == std::string::npos;
    body["expectedVersion"] = numeric ? Json(std::stoll(e)) : Json(e);
  }
  std::string err;
  auto r = c.Send(
      "POST",
      "/v1/streams/" + Enc(a.positional[1]) + "/entities/" + Enc(a.positional[2]) + "/events", body,
      {}, &err);
  if (int code = Check(r, err)) return code;
  if (json_out) {
    std::cout << r.body.dump(2) << "\n";
  } else {
    std::cout << (r.status == 200 ? "already stored (replay): " : "appended ")
              << Str(r.body["stream"]) << "/" << Str(r.body["entity"]) << " version "
              << Str(r.body["version"]) << " at position " << Str(r.body["position"]) << "\n";
  }
  return 0;
}

int Get(Client& c, const Args& a, bool json_out) {
  if (a.positional.size() != 3) UsageError("get needs STREAM ENTITY");
  std::string q;
  if (a.Has("version")) q = "?version=" + Enc(a.Flag("version"));
  if (a.Has("at")) q = "?at=" + Enc(a.Flag("at"));
  std::string err;
  auto r =
      c.Send("GET", "/v1/streams/" + Enc(a.positional[1]) + "/entities/" + Enc(a.positional[2]) + q,
             nullptr, {}, &err);
  if (int code = Check(r, err)) return code;
  if (json_out) {
    std::cout << r.body.dump(2) << "\n";
  } else {
    std::cout << "entity:   " << Str(r.body["stream"]) << "/" << Str(r.body["entity"]) << "\n"
              << "version:  " << Str(r.body["version"]) << "\n"
              << "status:   " << Str(r.body["status"]) << "\n"
              << "updated:  " << Str(r.body["updatedAt"]) << "\n"
              << "state:    " << r.body["state"].dump(2) << "\n";
  }
  return 0;
}

int Events(Client& c, const Args& a, bool json_out) {
  if (a.positional.size() < 2 || a.positional.size() > 3)
    UsageError("events needs STREAM [ENTITY]");
  std::string path = "/v1/streams/" + Enc(a.positional[1]);
  std::string q = "?limit=" + Enc(a.Flag("limit", "100"));
  if (a.positional.size() == 3) {
    path += "/entities/" + Enc(a.positional[2]) + "/events";
    q += "&fromVersion=" + Enc(a.Flag("from", "1"));
  } else {
    path += "/events";
    q += "&from=" + Enc(a.Flag("from", "0"));
    if (a.Has("types")) q += "&types=" + Enc(a.Flag("types"));
  }
  std::string err;
  auto r = c.Send("GET", path + q, nullptr, {}, &err);
  if (int code = Check(r, err)) return code;
  if (json_out) {
    std::cout << r.body.dump(2) << "\n";
  } else {
    PrintEvents(r.body["events"]);
    std::cout << "next: " << Str(r.body["next"]) << "\n";
  }
  return 0;
}

int Tail(Client& c, const Args& a, bool json_out) {
  if (a.positional.size() != 2 || !a.Has("f")) UsageError("tail needs -f STREAM");
  std::string q = "?follow=true&from=" + Enc(a.Flag("from", "0"));
  if (a.Has("types")) q += "&types=" + Enc(a.Flag("types"));
  if (!json_out) {
    std::cout << Pad("POSITION", 10) << Pad("ENTITY", 20) << Pad("VERSION", 8) << Pad("TYPE", 20)
              << "DATA\n"
              << std::flush;
  }
  std::string err = c.Follow("/v1/streams/" + Enc(a.positional[1]) + "/events" + q, "",
                             [&](const std::string& id, const std::string& type, const Json& e) {
                               if (json_out) {
                                 std::cout << e.dump() << "\n" << std::flush;
                               } else {
                                 std::cout << Pad(id, 10) << Pad(Str(e["subject"]), 20)
                                           << Pad(Str(e["sidelogversion"]), 8) << Pad(type, 20)
                                           << e["data"].dump() << "\n"
                                           << std::flush;
                               }
                               return true;
                             });
  if (!err.empty()) {
    std::cerr << "sidelog: " << err << "\n";
    return 3;
  }
  return 0;
}

int Entities(Client& c, const Args& a, bool json_out) {
  if (a.positional.size() != 2) UsageError("entities needs STREAM");
  std::string q = "?limit=" + Enc(a.Flag("limit", "100"));
  if (a.Has("prefix")) q += "&prefix=" + Enc(a.Flag("prefix"));
  std::string err;
  auto r =
      c.Send("GET", "/v1/streams/" + Enc(a.positional[1]) + "/entities" + q, nullptr, {}, &err);
  if (int code = Check(r, err)) return code;
  if (json_out) {
    std::cout << r.body.dump(2) << "\n";
    return 0;
  }
  std::cout << Pad("ENTITY", 40) << Pad("VERSION", 8) << "DELETED\n";
  for (const auto& e : r.body["entities"]) {
    std::cout << Pad(Str(e["id"]), 40) << Pad(Str(e["version"]), 8)
              << (e.value("deleted", false) ? "yes" : "") << "\n";
  }
  return 0;
}

int Streams(Client& c, bool json_out) {
  std::string err;
  auto r = c.Send("GET", "/v1/streams", nullptr, {}, &err);
  if (int code = Check(r, err)) return code;
  if (json_out) {
    std::cout << r.body.dump(2) << "\n";
    return 0;
  }
  std::cout << Pad("STREAM", 24) << Pad("ACCESS", 7) << Pad("ENTITIES", 9) << Pad("EVENTS", 9)
            << Pad("POSITION", 9) << "LAG\n";
  for (const auto& s : r.body["streams"]) {
    std::cout << Pad(Str(s["name"]), 24) << Pad(Str(s["access"]), 7) << Pad(Str(s["entities"]), 9)
              << Pad(Str(s["events"]), 9) << Pad(Str(s["lastPosition"]), 9)
              << Str(s["replicationLag"]) << "\n";
  }
  return 0;
}

int StatusCmd(Client& c, bool json_out) {
  std::string err;
  auto r = c.Send("GET", "/v1/status", nullptr, {}, &err);
  if (int code = Check(r, err)) return code;
  if (json_out) {
    std::cout << r.body.dump(2) << "\n";
    return 0;
  }
  const Json& b = r.body;
  std::cout << "service:   " << Str(b["namespace"]) << "/" << Str(b["service"]) << "\n"
            << "mode:      " << Str(b["mode"]) << "\n"
            << "ready:     " << Str(b["ready"]) << "\n"
            << "log:       " << Str(b["log"]["path"]) << " (" << Str(b["log"]["sizeBytes"])
            << " bytes, durability " << Str(b["log"]["durability"]) << ")\n"
            << "nats:      " << Str(b["nats"]["state"]) << "\n";
  for (const auto& s : b["streams"]) {
    std::cout << "stream:    " << Pad(Str(s["name"]), 24) << "position " << Str(s["lastPosition"])
              << ", lag " << Str(s["lag"]) << ", " << Str(s["state"]) << "\n";
  }
  return 0;
}

std::string SubscriptionPath(const Args& a, const char* command, size_t want) {
  if (a.positional.size() != want) {
    UsageError(std::string(command) + (want == 3 ? " needs NAME ID" : " needs NAME"));
  }
  return "/v1/subscriptions/" + Enc(a.positional[1]);
}

int Subscriptions(Client& c, const Args& a, bool json_out) {
  if (a.positional.size() > 2) UsageError("subscriptions takes at most one NAME");
  std::string err;
  auto r = c.Send("GET",
                  a.positional.size() == 2 ? SubscriptionPath(a, "subscriptions", 2)
                                           : std::string("/v1/subscriptions"),
                  nullptr, {}, &err);
  if (int code = Check(r, err)) return code;
  if (json_out) {
    std::cout << r.body.dump(2) << "\n";
    return 0;
  }
  const Json list =
      r.body.contains("subscriptions") ? r.body["subscriptions"] : Json::array({r.body});
  if (list.empty()) {
    std::cout << "no subscriptions: no stream of this sidecar has deliver:\n";
    return 0;
  }
  std::cout << Pad("NAME", 20) << Pad("STATE", 14) << Pad("GROUP", 8) << Pad("ORDERING", 9)
            << Pad("POSITION", 9) << Pad("IN-FLIGHT", 10) << Pad("LAG", 8) << Pad("DELIVERED", 10)
            << Pad("RETRIED", 8) << Pad("PARKED", 7) << "APP\n";
  for (const auto& s : list) {
    std::cout << Pad(Str(s["name"]), 20) << Pad(Str(s["state"]), 14) << Pad(Str(s["group"]), 8)
              << Pad(Str(s["ordering"]), 9) << Pad(Str(s["position"]), 9)
              << Pad(Str(s["inFlight"]), 10) << Pad(Str(s["lag"]["events"]), 8)
              << Pad(Str(s["delivered"]), 10) << Pad(Str(s["retried"]), 8)
              << Pad(Str(s["parked"]), 7) << Str(s["app"]["address"])
              << (s["app"].value("up", true) ? "" : " (down)") << "\n";
    if (s.contains("detail")) std::cout << "  " << Str(s["detail"]) << "\n";
    if (s.contains("lastError")) {
      std::cout << "  last error: " << Str(s["lastError"]["message"]) << " ("
                << Str(s["lastError"]["at"]) << ")\n";
    }
  }
  return 0;
}

int Parked(Client& c, const Args& a, bool json_out) {
  std::string q = "?limit=" + Enc(a.Flag("limit", "100"));
  if (a.Has("after")) q += "&after=" + Enc(a.Flag("after"));
  std::string err;
  auto r = c.Send("GET", SubscriptionPath(a, "parked", 2) + "/parked" + q, nullptr, {}, &err);
  if (int code = Check(r, err)) return code;
  if (json_out) {
    std::cout << r.body.dump(2) << "\n";
    return 0;
  }
  std::cout << Pad("ID", 6) << Pad("POSITION", 10) << Pad("ENTITY", 20) << Pad("TYPE", 20)
            << Pad("ATTEMPTS", 9) << Pad("PARKED AT", 28) << "LAST ERROR\n";
  for (const auto& p : r.body["parked"]) {
    std::cout << Pad(Str(p["id"]), 6) << Pad(Str(p["position"]) + "." + Str(p["index"]), 10)
              << Pad(Str(p["entity"]), 20) << Pad(Str(p["type"]), 20) << Pad(Str(p["attempts"]), 9)
              << Pad(Str(p["parkedAt"]), 28) << Str(p["lastError"]) << "\n";
  }
  if (!r.body["next"].is_null()) std::cout << "more: --after " << Str(r.body["next"]) << "\n";
  return 0;
}

int Replay(Client& c, const Args& a, bool json_out) {
  Json body = nullptr;
  if (a.Has("id")) {
    body = {{"ids", Json::array()}};
    for (const auto& id : a.flags.at("id")) {
      if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos) {
        UsageError("--id takes a parked event's id (a number), got " + id);
      }
      body["ids"].push_back(std::stoll(id));
    }
  }
  std::string err;
  auto r = c.Send("POST", SubscriptionPath(a, "replay", 2) + "/parked/replay", body, {}, &err);
  if (int code = Check(r, err)) return code;
  if (json_out) {
    std::cout << r.body.dump(2) << "\n";
  } else {
    std::cout << "replaying " << Str(r.body["replaying"]) << " parked events; `sidelog parked "
              << a.positional[1] << "` lists those still parked\n";
  }
  return 0;
}

int Discard(Client& c, const Args& a) {
  const std::string path = SubscriptionPath(a, "discard", 3) + "/parked/" + Enc(a.positional[2]);
  std::string err;
  auto r = c.Send("DELETE", path, nullptr, {}, &err);
  if (int code = Check(r, err)) return code;
  std::cout << "discarded parked event " << a.positional[2] << "\n";
  return 0;
}

// "[##########..........]  50%  5,000 / 10,000 events  building"
std::string ProgressLine(const Json& rebuild) {
  const double fraction = rebuild.value("progress", 0.0);
  const int width = 30, filled = static_cast<int>(std::lround(fraction * width));
  auto thousands = [](int64_t v) {
    std::string d = std::to_string(v), out;
    for (size_t i = 0; i < d.size(); ++i) {
      if (i > 0 && (d.size() - i) % 3 == 0) out += ',';
      out += d[i];
    }
    return out;
  };
  char pct[8];
  std::snprintf(pct, sizeof pct, "%3d%%", static_cast<int>(fraction * 100));
  // A consolidator reading JetStream counts positions (commits); one reading a sidecar, events.
  const bool positions = rebuild.contains("positionsTotal");
  const char* unit = positions ? "positions" : "events";
  return "[" + std::string(static_cast<size_t>(filled), '#') +
         std::string(static_cast<size_t>(width - filled), '.') + "] " + pct + "  " +
         thousands(rebuild.value(positions ? "positionsDone" : "eventsDone", int64_t{0})) + " / " +
         thousands(rebuild.value(positions ? "positionsTotal" : "eventsTotal", int64_t{0})) + " " +
         unit + "  " + rebuild.value("state", "") +
         (rebuild.contains("detail") ? " (" + rebuild.value("detail", "") + ")" : "");
}

// Asks the consolidator for a rebuild and, unless --wait false, shows its progress until it is
// swapped in (exit 0) or fails (exit 1). A terminal gets one bar redrawn in place; a pipe gets a
// line at every tenth and at every change of state.
int Rebuild(const Args& a, bool json_out) {
  const char* env = std::getenv("SIDELOG_CONSOLIDATOR_URL");
  Client c(a.Flag("consolidator", env && *env ? env : "http://127.0.0.1:4390"));
  std::string err;
  if (a.Has("cancel")) {
    auto r = c.Send("DELETE", "/v1/rebuild", nullptr, {}, &err);
    if (int code = Check(r, err)) return code;
    for (int i = 0; i < 100; ++i) {  // the supervisor takes it within a step (200 ms)
      auto status = c.Send("GET", "/v1/status", nullptr, {}, &err);
      if (status.status == 0) return Check(status, err);
      const Json rebuild = status.body["rebuild"];
      const std::string state = rebuild.value("state", "");
      if (state != "requested" && state != "building" && state != "swapping") {
        if (json_out) {
          std::cout << rebuild.dump(2) << "\n";
        } else {
          std::cout << "rebuild " << state << "\n";
        }
        return state == "cancelled" ? 0 : 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::cerr << "sidelog: the rebuild was not cancelled within 10 s\n";
    return 1;
  }
  auto r = c.Send("POST", "/v1/rebuild", Json::object(), {}, &err);
  if (int code = Check(r, err)) return code;
  if (a.Flag("wait", "true") == "false") {
    if (json_out) {
      std::cout << r.body.dump(2) << "\n";
    } else {
      std::cout << "rebuild requested at " << c.base_url() << "\n";
    }
    return 0;
  }
  const bool tty = isatty(fileno(stderr));
  std::string last_state;
  int last_tenth = -1;
  Json rebuild = r.body;
  for (;;) {
    const std::string state = rebuild.value("state", "");
    const int tenth = static_cast<int>(rebuild.value("progress", 0.0) * 10);
    if (!json_out) {
      if (tty) {
        std::cerr << "\r" << ProgressLine(rebuild) << "\x1b[K" << std::flush;
      } else if (state != last_state || tenth != last_tenth) {
        std::cerr << ProgressLine(rebuild) << "\n";
      }
    }
    last_state = state;
    last_tenth = tenth;
    if (state == "done" || state == "failed" || state == "cancelled") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(tty ? 200 : 500));
    auto status = c.Send("GET", "/v1/status", nullptr, {}, &err);
    if (status.status == 0) {
      if (tty) std::cerr << "\n";
      std::cerr << "sidelog: lost the consolidator: " << err << "\n";
      return 3;
    }
    rebuild = status.body["rebuild"];
  }
  if (tty && !json_out) std::cerr << "\n";
  if (json_out) std::cout << rebuild.dump(2) << "\n";
  if (last_state == "failed") {
    std::cerr << "sidelog: the rebuild failed: " << rebuild.value("error", "(no detail)") << "\n";
    return 1;
  }
  if (last_state == "cancelled") {
    std::cerr << "sidelog: the rebuild was cancelled; the live view is as it was\n";
    return 1;
  }
  if (!json_out) std::cout << "rebuilt and swapped in\n";
  return 0;
}

int Graph(const Args& a) {
  auto usage_error = [](const std::string& msg) { UsageError(msg, sidelog::cli::kGraphUsage); };
  if (a.positional.size() != 1) usage_error("graph takes no arguments, got " + a.positional[1]);
  for (const auto& [name, values] : a.flags) {
    if (name != "namespace" && name != "file" && name != "format" && name != "output" &&
        name != "cycles" && name != "kubeconfig") {
      usage_error("graph has no flag --" + name);
    }
  }
  sidelog::cli::GraphOptions o;
  o.ns = a.Flag("namespace");
  if (a.Has("file")) o.files = a.flags.at("file");
  o.kubeconfig = a.Flag("kubeconfig");
  o.format = a.Flag("format", "mermaid");
  if (o.format != "mermaid" && o.format != "dot" && o.format != "svg" && o.format != "png") {
    usage_error("--format must be mermaid, dot, svg or png, got " + o.format);
  }
  o.output = a.Flag("output");
  if (o.format == "png" && (o.output.empty() || o.output == "-")) {
    usage_error("--format png needs -o FILE");
  }
  if (a.Has("cycles") && !sidelog::op::ParseCyclePolicy(a.Flag("cycles"), &o.cycles)) {
    usage_error("--cycles must be allow, warn or deny, got " + a.Flag("cycles"));
  }
  return sidelog::cli::RunGraph(o);
}

// Short flags that take a value in a command (as kubectl spells them), by their long names.
const std::map<std::string, std::map<std::string, std::string>> kShortFlags = {
    {"graph", {{"-n", "namespace"}, {"-f", "file"}, {"-o", "output"}}},
};

}  // namespace

int main(int argc, char** argv) {
  Args a;
  bool json_out = false;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    const bool graph = !a.positional.empty() && a.positional[0] == "graph";
    const char* usage = graph ? sidelog::cli::kGraphUsage : kUsage;
    if (s == "-h" || s == "--help" || (s == "help" && !graph)) {
      std::cout << usage;
      return 0;
    }
    auto command_flags =
        a.positional.empty() ? kShortFlags.end() : kShortFlags.find(a.positional[0]);
    if (command_flags != kShortFlags.end() && command_flags->second.count(s) > 0) {
      const std::string& name = command_flags->second.at(s);
      if (i + 1 >= argc) UsageError(s + " needs a value", usage);
      a.flags[name].push_back(argv[++i]);
    } else if (s == "-o") {
      if (i + 1 >= argc) UsageError("-o needs table or json");
      std::string o = argv[++i];
      if (o != "json" && o != "table") UsageError("-o must be table or json");
      json_out = o == "json";
    } else if (s == "-f") {
      a.flags["f"].push_back("");
    } else if (s.rfind("--", 0) == 0) {
      std::string name = s.substr(2), value;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else if (name == "cancel") {  // the one switch: it takes no value
        value = "true";
      } else {
        if (i + 1 >= argc) UsageError("--" + name + " needs a value", usage);
        value = argv[++i];
      }
      a.flags[name].push_back(value);
    } else {
      a.positional.push_back(s);
    }
  }
  if (a.positional.empty()) UsageError("no command");
  const char* url = std::getenv("SIDELOG_URL");
  Client c(url && *url ? url : "http://127.0.0.1:4380");
  const std::string& cmd = a.positional[0];
  if (cmd == "append") return Append(c, a, json_out);
  if (cmd == "get") return Get(c, a, json_out);
  if (cmd == "events") return Events(c, a, json_out);
  if (cmd == "tail") return Tail(c, a, json_out);
  if (cmd == "entities") return Entities(c, a, json_out);
  if (cmd == "streams") return Streams(c, json_out);
  if (cmd == "status") return StatusCmd(c, json_out);
  if (cmd == "rebuild") return Rebuild(a, json_out);
  if (cmd == "subscriptions") return Subscriptions(c, a, json_out);
  if (cmd == "parked") return Parked(c, a, json_out);
  if (cmd == "replay") return Replay(c, a, json_out);
  if (cmd == "discard") return Discard(c, a);
  if (cmd == "graph") return Graph(a);
  UsageError("unknown command " + cmd);
}
