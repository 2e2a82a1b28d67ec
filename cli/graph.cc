#include "graph.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <set>
#include <sstream>

#include "eventstream_reconciler.h"  // kEventStreams
#include "graph_render.h"
#include "kube_client.h"
#include "kube_config.h"
#include "sidelog/yaml.h"

namespace sidelog::cli {

const char* const kGraphUsage =
    R"(usage: sidelog graph [-n NAMESPACE] [-f FILE_OR_DIR]... [--format mermaid|dot|svg|png]
                     [-o FILE] [--cycles allow|warn|deny] [--kubeconfig FILE]

Draws the dependency graph of a namespace's EventServices: services as nodes, and an edge from
producer to consumer per consumed stream, labelled with the stream and the event types read.
Missing EventStreams (dashed red), Single-producer conflicts (orange) and dependency cycles
(red) are coloured and reported on stderr.

  -n, --namespace NS    the namespace (default: the kubeconfig's; with -f, the manifests')
  -f, --file PATH       read manifests instead of the cluster: a YAML file (several documents
                        and kind: List allowed), a directory (its *.yaml and *.yml files) or -
                        for stdin; repeatable. Objects without a namespace belong to -n, or to
                        "default"
  --format FORMAT       mermaid (default; paste it into a ```mermaid block), dot (Graphviz),
                        svg or png (rendered by Graphviz's dot, which must be installed)
  -o, --output FILE     write there instead of stdout (required for png)
  --cycles POLICY       allow: do not mark cycles; warn (default): mark and report them;
                        deny: as warn, and exit 1 when there is one
  --kubeconfig FILE     the cluster's kubeconfig (default: $KUBECONFIG, in a pod its service
                        account, then ~/.kube/config)

examples:
  sidelog graph -n shop
  sidelog graph -f examples/shop/k8s/ --format svg -o shop.svg
  kubectl sidelog graph -n shop --format dot | dot -Tpng -o shop.png
)";

namespace {

struct Objects {
  std::string ns;
  std::vector<Json> streams;
  std::vector<Json> services;
};

// A failure, with the exit code it maps to.
struct Failure {
  int code = 0;
  std::string message;
};

std::string StringAt(const Json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// --- Manifest files -------------------------------------------------------------------------

// The files a -f argument names: itself, or a directory's *.yaml and *.yml files, sorted.
Result<std::vector<std::string>> ExpandPath(const std::string& path) {
  namespace fs = std::filesystem;
  if (path == "-") return std::vector<std::string>{path};
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      const std::string ext = entry.path().extension().string();
      if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml")) {
        files.push_back(entry.path().string());
      }
    }
    if (ec) return Status::Invalid("cannot list " + path + ": " + ec.message());
    std::sort(files.begin(), files.end());
    return files;
  }
  if (!fs::exists(path, ec)) return Status::NotFound(path + ": no such file or directory");
  return std::vector<std::string>{path};
}

Result<std::string> ReadText(const std::string& path) {
  std::stringstream ss;
  if (path == "-") {
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Invalid("cannot read " + path + ": " + std::strerror(errno));
  ss << in.rdbuf();
  return ss.str();
}

// Splits a YAML stream at its document markers ("---" and "..." at the start of a line). Each
// document keeps its lines' numbers: the lines before it are left blank.
std::vector<std::string> SplitDocuments(const std::string& text) {
  auto marker = [](const std::string& l, const char* m) {
    return l.compare(0, 3, m) == 0 && (l.size() == 3 || l[3] == ' ' || l[3] == '\t');
  };
  std::vector<std::string> docs(1);
  std::istringstream in(text);
  size_t line = 0;
  for (std::string l; std::getline(in, l); ++line) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    if (marker(l, "---")) {  // a document starts here, on this line
      docs.push_back(std::string(line, '\n') + l.substr(3) + "\n");
    } else if (marker(l, "...")) {  // a document ends here
      docs.emplace_back(line + 1, '\n');
    } else {
      docs.back() += l + "\n";
    }
  }
  return docs;
}

// Adds the EventStreams and EventServices of one document (or of its items, for a List).
void Collect(const Json& object, std::vector<Json>* streams, std::vector<Json>* services) {
  if (!object.is_object()) return;
  const std::string kind = StringAt(object, "kind");
  // kind List (kubectl get -o yaml of several kinds), or EventServiceList and the like.
  if (kind.size() >= 4 && kind.compare(kind.size() - 4, 4, "List") == 0) {
    auto items = object.find("items");
    if (items != object.end() && items->is_array()) {
      for (const auto& item : *items) Collect(item, streams, services);
    }
    return;
  }
  if (StringAt(object, "apiVersion").rfind(op::kEventServices.group + "/", 0) != 0) return;
  if (kind == op::kEventStreams.kind) streams->push_back(object);
  if (kind == op::kEventServices.kind) services->push_back(object);
}

// Reads the -f manifests into *out: exit code 1 when one cannot be read or parsed, 2 when
// they span namespaces and -n does not choose.
bool LoadManifests(const GraphOptions& o, Objects* out, Failure* failure) {
  std::vector<Json> streams, services;
  for (const auto& arg : o.files) {
    auto files = ExpandPath(arg);
    if (!files.ok()) {
      *failure = {1, files.status().message()};
      return false;
    }
    for (const auto& file : *files) {
      auto text = ReadText(file);
      if (!text.ok()) {
        *failure = {1, text.status().message()};
        return false;
      }
      for (const auto& doc : SplitDocuments(*text)) {
        auto parsed = ParseYaml(doc, file == "-" ? "stdin" : file);
        if (!parsed.ok()) {
          *failure = {1, parsed.status().message()};
          return false;
        }
        Collect(parsed->root, &streams, &services);
      }
    }
  }
  // Each object's namespace; without one, -n's or "default".
  auto ns_of = [&](const Json& object) {
    std::string ns = StringAt(object.value("metadata", Json::object()), "namespace");
    return ns.empty() ? (o.ns.empty() ? std::string("default") : o.ns) : ns;
  };
  out->ns = o.ns;
  if (out->ns.empty()) {
    std::set<std::string> namespaces;
    for (const auto* list : {&streams, &services}) {
      for (const auto& object : *list) namespaces.insert(ns_of(object));
    }
    if (namespaces.size() > 1) {
      std::string names;
      for (const auto& ns : namespaces) names += (names.empty() ? "" : ", ") + ns;
      *failure = {2,
                  "the manifests hold objects of the namespaces " + names + ": choose one with -n"};
      return false;
    }
    out->ns = namespaces.empty() ? "default" : *namespaces.begin();
  }
  for (auto& object : streams) {
    if (ns_of(object) == out->ns) out->streams.push_back(std::move(object));
  }
  for (auto& object : services) {
    if (ns_of(object) == out->ns) out->services.push_back(std::move(object));
  }
  return true;
}

// --- The cluster ----------------------------------------------------------------------------

Result<std::vector<Json>> ListAll(op::KubeClient& client, const op::ResourceType& type,
                                  const std::string& ns) {
  std::vector<Json> items;
  op::ListOptions options;
  do {
    auto page = client.List(type, ns, options);
    if (!page.ok()) return page.status();
    for (auto& item : (*page)["items"]) items.push_back(std::move(item));
    options.continue_token = StringAt(page->value("metadata", Json::object()), "continue");
  } while (!options.continue_token.empty());
  return items;
}

Failure ApiFailure(const Status& s, const op::ResourceType& type, const std::string& server) {
  if (s.code() == Status::Code::kUnavailable) {
    return {3, "cannot reach the Kubernetes API at " + server + ": " + s.message()};
  }
  std::string message = "listing " + type.plural + ": " + s.ToString();
  if (s.code() == Status::Code::kNotFound) {
    message += " (are Sidelog's CRDs installed? kubectl apply -f crds/)";
  }
  return {1, message};
}

// Lists the namespace's EventStreams and EventServices into *out: exit code 3 when the API
// server cannot be reached (or there is no kubeconfig), 1 when it answers with an error.
bool LoadCluster(const GraphOptions& o, Objects* out, Failure* failure) {
  auto config = op::ResolveKubeConfig(o.kubeconfig);
  if (!config.ok()) {
    *failure = {3, "no Kubernetes API to ask: " + config.status().message()};
    return false;
  }
  out->ns = o.ns.empty() ? config->default_namespace : o.ns;
  op::KubeClient client(*config);
  auto streams = ListAll(client, op::kEventStreams, out->ns);
  if (!streams.ok()) {
    *failure = ApiFailure(streams.status(), op::kEventStreams, config->server);
    return false;
  }
  auto services = ListAll(client, op::kEventServices, out->ns);
  if (!services.ok()) {
    *failure = ApiFailure(services.status(), op::kEventServices, config->server);
    return false;
  }
  out->streams = std::move(*streams);
  out->services = std::move(*services);
  return true;
}

// --- Rendering with Graphviz ----------------------------------------------------------------

// Runs `dot -T<format>` on `input` and returns what it writes. Its stderr is passed through.
Result<std::string> RunDot(const std::string& input, const std::string& format) {
  int in[2], out[2], exec_error[2];
  if (pipe(in) != 0 || pipe(out) != 0 || pipe2(exec_error, O_CLOEXEC) != 0) {
    return Status::Internal(std::string("pipe: ") + std::strerror(errno));
  }
  const std::string type = "-T" + format;
  pid_t pid = fork();
  if (pid < 0) return Status::Internal(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    close(exec_error[0]);
    execlp("dot", "dot", type.c_str(), static_cast<char*>(nullptr));
    int e = errno;
    (void)!write(exec_error[1], &e, sizeof e);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(exec_error[1]);
  // dot reads all of its input before writing, but poll both ends so neither can block.
  auto old_pipe = std::signal(SIGPIPE, SIG_IGN);
  std::string output;
  size_t written = 0;
  int to_dot = in[1];
  if (input.empty()) {
    close(to_dot);
    to_dot = -1;
  }
  for (bool open = true; open;) {
    pollfd fds[2] = {{out[0], POLLIN, 0}, {to_dot, POLLOUT, 0}};
    if (poll(fds, to_dot >= 0 ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (to_dot >= 0 && fds[1].revents != 0) {
      ssize_t n = write(to_dot, input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<size_t>(n);
      if (n < 0 || written == input.size()) {
        close(to_dot);
        to_dot = -1;
      }
    }
    if (fds[0].revents != 0) {
      char buf[65536];
      ssize_t n = read(out[0], buf, sizeof buf);
      if (n > 0) {
        output.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        open = false;
      }
    }
  }
  if (to_dot >= 0) close(to_dot);
  close(out[0]);
  std::signal(SIGPIPE, old_pipe);
  int exec_errno = 0;
  const bool exec_failed = read(exec_error[0], &exec_errno, sizeof exec_errno) > 0;
  close(exec_error[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (exec_failed) {
    if (exec_errno == ENOENT) {
      return Status::NotFound("--format " + format +
                              " needs Graphviz's dot, which is not installed (apt-get install "
                              "graphviz), or use --format dot or mermaid");
    }
    return Status::Internal(std::string("cannot run dot: ") + std::strerror(exec_errno));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Status::Internal("dot -T" + format + " failed (exit status " +
                            std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
  }
  return output;
}

// --- Reporting ------------------------------------------------------------------------------

// Warns on stderr of every problem the graph has; returns whether a cycle is denied.
bool Report(const op::DependencyGraph& graph, const std::string& ns, op::CyclePolicy policy) {
  for (const auto& [name, r] : graph.services()) {
    for (const auto& stream : r.missing_streams) {
      std::cerr << "sidelog: warning: " << ns << "/" << name << " lists stream " << stream
                << ", which has no EventStream\n";
    }
    for (const auto& c : r.conflicts) {
      std::cerr << "sidelog: warning: " << ns << "/" << name << " produces " << c.stream
                << ", a Single-producer stream that " << c.owner << " keeps\n";
    }
  }
  if (policy == op::CyclePolicy::kAllow) return false;
  const char* what = policy == op::CyclePolicy::kDeny ? "error" : "warning";
  for (const auto& cycle : graph.cycles()) {
    std::cerr << "sidelog: " << what << ": dependency cycle in " << ns << ": "
              << op::DependencyGraph::CycleText(cycle) << "\n";
  }
  if (graph.cycles_truncated()) {
    std::cerr << "sidelog: " << what << ": more than " << op::DependencyGraph::kMaxCycles
              << " dependency cycles; the first are shown\n";
  }
  return policy == op::CyclePolicy::kDeny && !graph.cycles().empty();
}

int Write(const std::string& text, const std::string& output) {
  if (output.empty() || output == "-") {
    std::cout << text << std::flush;
    return std::cout ? 0 : 1;
  }
  std::ofstream out(output, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    std::cerr << "sidelog: cannot write " << output << ": " << std::strerror(errno) << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int RunGraph(const GraphOptions& o) {
  Objects objects;
  Failure failure;
  const bool loaded =
      o.files.empty() ? LoadCluster(o, &objects, &failure) : LoadManifests(o, &objects, &failure);
  if (!loaded) {
    std::cerr << "sidelog: " << failure.message << "\n";
    return failure.code;
  }
  if (objects.services.empty()) {
    std::cerr << "sidelog: warning: no EventServices in namespace " << objects.ns << "\n";
  }
  auto graph = op::DependencyGraph::FromObjects(objects.streams, objects.services);
  const bool denied = Report(graph, objects.ns, o.cycles);
  const Drawing drawing = Draw(graph, objects.ns, o.cycles);

  std::string text;
  if (o.format == "mermaid") {
    text = MermaidText(drawing);
  } else {
    text = DotText(drawing);
    if (o.format == "svg" || o.format == "png") {
      auto rendered = RunDot(text, o.format);
      if (!rendered.ok()) {
        std::cerr << "sidelog: " << rendered.status().message() << "\n";
        return 1;
      }
      text = std::move(*rendered);
    }
  }
  if (int code = Write(text, o.output)) return code;
  return denied ? 1 : 0;
}

}  // namespace sidelog::cli
