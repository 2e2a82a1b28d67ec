// `sidelog graph`, run as the built binary on the example shop's manifests and on manifests
// written here, and rendered by the real Graphviz.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Outcome {
  int code = -1;
  std::string out;
  std::string err;
};

std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class GraphCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sidelog-graph.XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path) << text;
    return path;
  }

  // Runs `env` `binary` `args`, stdin from /dev/null.
  Outcome Sidelog(const std::vector<std::string>& args, const std::string& env = "",
                  const std::string& binary = SIDELOG_CLI_BIN) {
    std::string cmd = env + " " + Quote(binary);
    for (const auto& a : args) cmd += " " + Quote(a);
    const std::string out = dir_ + "/.stdout", err = dir_ + "/.stderr";
    cmd += " </dev/null >" + Quote(out) + " 2>" + Quote(err);
    Outcome r;
    int status = std::system(cmd.c_str());
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = ReadFile(out);
    r.err = ReadFile(err);
    return r;
  }

  // Two services consuming each other's streams (a cycle), a third that also lists the
  // Single-producer stream orders (a conflict: it is newer), a consumed stream without an
  // EventStream, and one without producers.
  std::string WriteTroubledTeam() {
    Write("team/streams.yaml", R"(# streams of the team
apiVersion: sidelog.dev/v1alpha1
kind: EventStream
metadata: {name: orders, namespace: team}
---
apiVersion: sidelog.dev/v1alpha1
kind: EventStream
metadata: {name: payments, namespace: team}
spec: {producerPolicy: Single}
---
apiVersion: sidelog.dev/v1alpha1
kind: EventStream
metadata: {name: imports, namespace: team}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: not-a-stream, namespace: team}
)");
    Write("team/services.yml", R"(apiVersion: v1
kind: List
items:
  - apiVersion: sidelog.dev/v1alpha1
    kind: EventService
    metadata: {name: orders, namespace: team, creationTimestamp: "2026-01-01T00:00:00Z"}
    spec:
      produces: [orders]
      consumes: [{stream: payments, types: [PaymentReceived]}]
  - apiVersion: sidelog.dev/v1alpha1
    kind: EventService
    metadata: {name: billing, namespace: team, creationTimestamp: "2026-01-02T00:00:00Z"}
    spec:
      produces: [payments]
      consumes: [{stream: orders}]
...
---
apiVersion: sidelog.dev/v1alpha1
kind: EventService
metadata: {name: rogue, namespace: team}
spec:
  produces: [orders]
  consumes: [{stream: ghost}, {stream: imports, types: [Imported]}]
)");
    Write("team/notes.txt", "not a manifest: {");
    return dir_ + "/team";
  }

  std::string Shop() const { return std::string(SIDELOG_EXAMPLES_DIR) + "/shop/k8s/"; }

  std::string dir_;
};

TEST_F(GraphCli, DrawsTheShopAsAMermaidFlowchart) {
  Outcome r = Sidelog({"graph", "-f", Shop()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out.rfind("flowchart LR\n", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("%% EventServices of namespace shop"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(R"(svc_orders["orders<br/>produces: customers, orders"])"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(R"(svc_billing["billing<br/>produces: payments"])"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(R"(svc_orders -->|"orders [OrderPlaced, OrderCancelled]"| svc_billing)"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("linkStyle"), std::string::npos) << "nothing to colour: " << r.out;
  EXPECT_EQ(r.out.find("legend"), std::string::npos) << r.out;
}

TEST_F(GraphCli, DrawsTheShopAsGraphvizDot) {
  Outcome r = Sidelog({"graph", "-f", Shop(), "--format", "dot", "-n", "shop"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("digraph \"shop\" {\n", 0), 0u) << r.out;
  EXPECT_NE(
      r.out.find(
          R"("service:orders" -> "service:billing" [label="orders [OrderPlaced, OrderCancelled]"];)"),
      std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(R"("service:billing" [label="billing\nproduces: payments"];)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("namespace <b>shop</b>"), std::string::npos) << r.out;
}

TEST_F(GraphCli, MarksCyclesConflictsAndMissingStreamsInColour) {
  const std::string team = WriteTroubledTeam();
  Outcome r = Sidelog({"graph", "-f", team});
  ASSERT_EQ(r.code, 0) << r.err;
  // Edges in order: billing's consumes, orders', rogue's (ghost, imports).
  EXPECT_NE(r.out.find(R"(svc_orders -->|"orders"| svc_billing)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(R"(svc_billing -->|"payments [PaymentReceived]"| svc_orders)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(R"(evs_ghost -.->|"ghost"| svc_rogue)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(R"(evs_imports -->|"imports [Imported]"| svc_rogue)"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("linkStyle 0 stroke:#d62728,stroke-width:3px"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("linkStyle 1 stroke:#d62728,stroke-width:3px"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("linkStyle 2 stroke:#d62728"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("linkStyle 3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(R"(svc_rogue["rogue<br/>conflict: orders is kept by orders"])"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("class svc_rogue conflict"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(R"(evs_ghost[("ghost<br/>no EventStream")])"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("class evs_ghost missing"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(R"(evs_imports[("imports<br/>no producer")])"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("red edges: a dependency cycle"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dashed red: no such EventStream"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("not-a-stream"), std::string::npos) << "a ConfigMap is no stream";

  EXPECT_NE(r.err.find("warning: dependency cycle in team: billing -> orders -> billing"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("team/rogue produces orders, a Single-producer stream that orders keeps"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("team/rogue lists stream ghost, which has no EventStream"),
            std::string::npos)
      << r.err;

  Outcome dot = Sidelog({"graph", "-f", team, "--format", "dot"});
  ASSERT_EQ(dot.code, 0) << dot.err;
  EXPECT_NE(
      dot.out.find(
          R"("service:orders" -> "service:billing" [label="orders", color="#d62728", fontcolor="#d62728", penwidth=2.5];)"),
      std::string::npos)
      << dot.out;
  EXPECT_NE(
      dot.out.find(
          R"("service:rogue" [label="rogue\nconflict: orders is kept by orders", color="#ef6c00")"),
      std::string::npos)
      << dot.out;
  EXPECT_NE(
      dot.out.find(
          R"("stream:ghost" [label="ghost\nno EventStream", shape=cylinder, style="filled,dashed", color="#d62728")"),
      std::string::npos)
      << dot.out;
  EXPECT_NE(
      dot.out.find(
          R"("stream:ghost" -> "service:rogue" [label="ghost", color="#d62728", fontcolor="#d62728", style=dashed];)"),
      std::string::npos)
      << dot.out;
  EXPECT_NE(dot.out.find(R"(<font color="#d62728">red edges: a dependency cycle</font>)"),
            std::string::npos)
      << dot.out;
}

TEST_F(GraphCli, CyclesDeniedExitOneAndCyclesAllowedAreNotMarked) {
  const std::string team = WriteTroubledTeam();
  Outcome deny = Sidelog({"graph", "-f", team, "--cycles", "deny"});
  EXPECT_EQ(deny.code, 1);
  EXPECT_NE(deny.out.find("linkStyle 0 stroke:#d62728"), std::string::npos)
      << "the graph is still drawn: " << deny.out;
  EXPECT_NE(deny.err.find("error: dependency cycle in team: billing -> orders -> billing"),
            std::string::npos)
      << deny.err;

  Outcome allow = Sidelog({"graph", "-f", team, "--cycles=allow"});
  EXPECT_EQ(allow.code, 0) << allow.err;
  EXPECT_EQ(allow.out.find("linkStyle 0"), std::string::npos) << allow.out;
  EXPECT_EQ(allow.out.find("dependency cycle"), std::string::npos) << allow.out;
  EXPECT_EQ(allow.err.find("dependency cycle"), std::string::npos) << allow.err;
  EXPECT_NE(allow.err.find("rogue produces orders"), std::string::npos)
      << "conflicts are still reported: " << allow.err;
}

TEST_F(GraphCli, RendersSvgToStdoutAndPngToAFile) {
  Outcome svg = Sidelog({"graph", "-f", Shop(), "--format", "svg"});
  ASSERT_EQ(svg.code, 0) << svg.err;
  EXPECT_NE(svg.out.find("<svg"), std::string::npos) << svg.out.substr(0, 400);
  EXPECT_NE(svg.out.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.out.find("orders [OrderPlaced, OrderCancelled]"), std::string::npos);

  const std::string svg_file = dir_ + "/team.svg";
  Outcome to_file =
      Sidelog({"graph", "-f", WriteTroubledTeam(), "--format", "svg", "-o", svg_file});
  ASSERT_EQ(to_file.code, 0) << to_file.err;
  EXPECT_EQ(to_file.out, "");
  const std::string team_svg = ReadFile(svg_file);
  EXPECT_NE(team_svg.find("<svg"), std::string::npos);
  EXPECT_NE(team_svg.find("stroke=\"#d62728\""), std::string::npos) << "red cycle edges";

  const std::string png_file = dir_ + "/shop.png";
  Outcome png = Sidelog({"graph", "-f", Shop(), "--format", "png", "--output", png_file});
  ASSERT_EQ(png.code, 0) << png.err;
  EXPECT_EQ(ReadFile(png_file).substr(0, 4), "\x89PNG");
}

TEST_F(GraphCli, WithoutGraphvizSvgFailsNamingIt) {
  Outcome r = Sidelog({"graph", "-f", Shop(), "--format", "svg"}, "env PATH=/nonexistent");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("needs Graphviz's dot, which is not installed"), std::string::npos) << r.err;
  Outcome dot = Sidelog({"graph", "-f", Shop(), "--format", "dot"}, "env PATH=/nonexistent");
  EXPECT_EQ(dot.code, 0) << "dot text needs no Graphviz: " << dot.err;
}

TEST_F(GraphCli, BadUsageExitsTwoWithTheCommandsHelp) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"graph", "-f", Shop(), "--format", "gif"},
           {"graph", "-f", Shop(), "--cycles", "sometimes"},
           {"graph", "-f", Shop(), "--format", "png"},
           {"graph", "-f", Shop(), "--colour", "red"},
           {"graph", "shop"},
           {"graph", "-n"},
       }) {
    Outcome r = Sidelog(args);
    EXPECT_EQ(r.code, 2) << args.back() << ": " << r.err;
    EXPECT_NE(r.err.find("usage: sidelog graph"), std::string::npos) << args.back() << r.err;
  }
}

TEST_F(GraphCli, HelpDescribesTheCommandAndTheMainUsageListsIt) {
  Outcome help = Sidelog({"graph", "--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_EQ(help.out.rfind("usage: sidelog graph", 0), 0u) << help.out;
  EXPECT_NE(help.out.find("--cycles POLICY"), std::string::npos);
  Outcome main_help = Sidelog({"--help"});
  EXPECT_EQ(main_help.code, 0);
  EXPECT_NE(main_help.out.find("  graph [-n NAMESPACE]"), std::string::npos) << main_help.out;
}

TEST_F(GraphCli, ManifestsOfSeveralNamespacesNeedAChoice) {
  Write("mixed/a.yaml", R"(apiVersion: sidelog.dev/v1alpha1
kind: EventService
metadata: {name: alpha, namespace: one}
spec: {produces: [a]}
---
apiVersion: sidelog.dev/v1alpha1
kind: EventService
metadata: {name: beta, namespace: two}
spec: {produces: [b]}
---
apiVersion: sidelog.dev/v1alpha1
kind: EventService
metadata: {name: gamma}
spec: {consumes: [{stream: b}]}
---
apiVersion: sidelog.dev/v1alpha1
kind: EventStream
metadata: {name: b}
)");
  Outcome r = Sidelog({"graph", "-f", dir_ + "/mixed/a.yaml"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("namespaces default, one, two: choose one with -n"), std::string::npos)
      << r.err;

  // Objects without a namespace belong to the one chosen.
  Outcome two = Sidelog({"graph", "-f", dir_ + "/mixed/a.yaml", "-n", "two", "--format", "dot"});
  ASSERT_EQ(two.code, 0) << two.err;
  EXPECT_NE(two.out.find(R"("service:beta" -> "service:gamma" [label="b"];)"), std::string::npos)
      << two.out;
  EXPECT_EQ(two.out.find("alpha"), std::string::npos) << two.out;

  Outcome one = Sidelog({"graph", "-f", dir_ + "/mixed/a.yaml", "-n", "one", "--format", "dot"});
  ASSERT_EQ(one.code, 0) << one.err;
  EXPECT_NE(one.out.find(R"("stream:b" -> "service:gamma" [label="b"];)"), std::string::npos)
      << "b has no producer in one: " << one.out;
  EXPECT_EQ(one.out.find("beta"), std::string::npos) << one.out;
  EXPECT_NE(one.err.find("one/alpha lists stream a, which has no EventStream"), std::string::npos)
      << one.err;
}

TEST_F(GraphCli, AManifestThatIsNotYamlExitsOneNamingItsLine) {
  const std::string bad = Write("bad.yaml", "apiVersion: v1\n---\nkind: [unclosed\n");
  Outcome r = Sidelog({"graph", "-f", bad});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(bad + ":"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not valid YAML"), std::string::npos) << r.err;
  Outcome missing = Sidelog({"graph", "-f", dir_ + "/nothing-here"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("no such file or directory"), std::string::npos) << missing.err;
}

TEST_F(GraphCli, AnUnreachableApiServerExitsThree) {
  const std::string config = Write("kubeconfig", R"(apiVersion: v1
kind: Config
current-context: local
clusters:
  - name: local
    cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
  - name: me
    user: {token: abc}
contexts:
  - name: local
    context: {cluster: local, user: me, namespace: shop}
)");
  Outcome flag = Sidelog({"graph", "--kubeconfig", config});
  EXPECT_EQ(flag.code, 3) << flag.err;
  EXPECT_NE(flag.err.find("cannot reach the Kubernetes API at https://127.0.0.1:1"),
            std::string::npos)
      << flag.err;
  Outcome env = Sidelog({"graph", "-n", "shop"}, "env KUBECONFIG=" + Quote(config));
  EXPECT_EQ(env.code, 3) << env.err;

  Outcome none =
      Sidelog({"graph"}, "env -u KUBECONFIG -u KUBERNETES_SERVICE_HOST HOME=" + Quote(dir_));
  EXPECT_EQ(none.code, 3) << none.err;
  EXPECT_NE(none.err.find("no Kubernetes config"), std::string::npos) << none.err;
}

TEST_F(GraphCli, RunsTheSameAsAKubectlPlugin) {
  const std::string plugin =
      std::filesystem::path(SIDELOG_CLI_BIN).parent_path().string() + "/kubectl-sidelog";
  ASSERT_TRUE(std::filesystem::exists(plugin)) << plugin;
  Outcome direct = Sidelog({"graph", "-f", Shop()});
  Outcome plugged = Sidelog({"graph", "-f", Shop()}, "", plugin);
  EXPECT_EQ(plugged.code, 0) << plugged.err;
  EXPECT_EQ(plugged.out, direct.out);
}

}  // namespace
