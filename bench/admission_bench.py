#!/usr/bin/env python3
"""Admission latency: pods created through a real kube-apiserver at a fixed rate, bounded in
count and time, with the sidecar injection webhook in the path (labelled pods) and without it
(unlabelled pods: the API server's own cost, the ceiling), and the webhook's /mutate called
directly (its own cost, TLS handshake included, as the API server pays it per connection).

    bench/admission_bench.py --kubeconfig FILE --namespace NS --webhook https://127.0.0.1:PORT \\
        --ca CA_FILE [--rate 50] [--pods 500]

Prints p50/p99/max of each. Dry-run creates (dryRun=All): the webhook is called exactly as
for a real create, nothing is stored, so every run starts from the same state.
"""
import argparse
import http.client
import json
import ssl
import threading
import time
import urllib.parse

import yaml  # PyYAML, from scripts/setup


def kube_connection(kubeconfig):
    cfg = yaml.safe_load(open(kubeconfig))
    ctx_name = cfg["current-context"]
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    base = kubeconfig.rsplit("/", 1)[0] if "/" in kubeconfig else "."

    def path(p):
        return p if p.startswith("/") else base + "/" + p

    tls = ssl.create_default_context(cafile=path(cluster["certificate-authority"]))
    headers = {"Content-Type": "application/json"}
    if "token" in user:
        headers["Authorization"] = "Bearer " + user["token"]
    else:
        tls.load_cert_chain(path(user["client-certificate"]), path(user["client-key"]))
    url = urllib.parse.urlparse(cluster["server"])
    return lambda: http.client.HTTPSConnection(url.hostname, url.port, context=tls), headers


def pod(name, labelled):
    labels = {"app": "orders"}
    if labelled:
        labels["sidelog.dev/inject"] = "true"
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "docker.io/sidelog/test-app:0",
                                     "command": ["sleep", "3600"]}]}}


def paced(count, rate, workers, call, deadline_s):
    """Runs call(i) for i in range(count), started at `rate` per second by `workers` threads,
    never past `deadline_s`; returns the latencies (s) of the calls that succeeded and the
    number that failed."""
    latencies, failures, lock = [], [0], threading.Lock()
    start = time.monotonic()
    next_i = [0]

    def work():
        local = None
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= count:
                return
            due = start + i / rate
            now = time.monotonic()
            if now - start > deadline_s:
                return
            if due > now:
                time.sleep(due - now)
            t0 = time.monotonic()
            try:
                local = call(i, local)
                ok = True
            except Exception as e:  # noqa: BLE001 - counted and shown once
                ok = False
                if failures[0] == 0:
                    print("  first failure:", e)
                local = None
            t1 = time.monotonic()
            with lock:
                if ok:
                    latencies.append(t1 - t0)
                else:
                    failures[0] += 1

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failures[0], time.monotonic() - start


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def report(label, latencies, failures, elapsed):
    n = len(latencies)
    print(f"{label:44s} n={n:4d} failed={failures:3d} rate={n / elapsed:5.1f}/s  "
          f"p50={pct(latencies, 50) * 1000:6.1f} ms  p99={pct(latencies, 99) * 1000:6.1f} ms  "
          f"max={max(latencies, default=float('nan')) * 1000:6.1f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--webhook", required=True, help="https://HOST:PORT of the operator")
    ap.add_argument("--ca", required=True, help="the webhook's CA (ca.crt of its Secret)")
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--pods", type=int, default=500)
    ap.add_argument("--max-seconds", type=float, default=60)
    args = ap.parse_args()
    connect, headers = kube_connection(args.kubeconfig)
    path = f"/api/v1/namespaces/{args.namespace}/pods?dryRun=All"

    def create(labelled):
        def call(i, conn):
            conn = conn or connect()
            body = json.dumps(pod(f"bench-{'l' if labelled else 'u'}-{i}", labelled))
            conn.request("POST", path, body, headers)
            r = conn.getresponse()
            data = r.read()
            if r.status != 201:
                raise RuntimeError(f"HTTP {r.status}: {data[:300]!r}")
            if labelled and b'"sidelog"' not in data:
                raise RuntimeError("created without the sidecar")
            return conn
        return call

    hook = urllib.parse.urlparse(args.webhook)
    hook_tls = ssl.create_default_context(cafile=args.ca)
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                          "operation": "CREATE", "namespace": args.namespace,
                          "object": pod("direct", True)}}

    def mutate(i, _conn):
        # A new connection per call: the API server's webhook client often reconnects, and the
        # handshake is part of what the webhook costs.
        conn = http.client.HTTPSConnection(hook.hostname, hook.port, context=hook_tls)
        review["request"]["uid"] = f"u{i}"
        conn.request("POST", "/mutate", json.dumps(review), {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = json.loads(r.read())
        conn.close()
        if not data["response"].get("patch"):
            raise RuntimeError(f"no patch: {data}")
        return None

    print(f"{args.pods} requests per row at {args.rate:g}/s (4 client threads), at most "
          f"{args.max_seconds:g} s each")
    for label, call in [("ceiling: unlabelled pod create (no webhook)", create(False)),
                        ("labelled pod create (webhook injects)", create(True)),
                        ("webhook alone: POST /mutate, new TLS conn", mutate)]:
        paced(20, args.rate, 4, call, 10)  # warm-up: connections, caches
        latencies, failures, elapsed = paced(args.pods, args.rate, 4, call, args.max_seconds)
        report(label, latencies, failures, elapsed)


if __name__ == "__main__":
    main()
