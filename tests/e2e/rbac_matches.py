#!/usr/bin/python3
"""Reads `kubectl auth can-i --list` on stdin and checks that its resource rows grant exactly the
verbs of the ClusterRole and Role in the RBAC file given (argv[1]): nothing missing, nothing more."""
import sys, yaml
rbac, listing = sys.argv[1], sys.stdin.read()
want = {}
for doc in yaml.safe_load_all(open(rbac)):
    if doc and doc.get("kind") in ("ClusterRole", "Role"):
        for r in doc["rules"]:
            for g in r["apiGroups"]:
                for res in r["resources"]:
                    base, _, sub = res.partition("/")
                    name = base + ("." + g if g else "") + ("/" + sub if sub else "")
                    want.setdefault(name, set()).update(r["verbs"])
got = {}
for line in listing.splitlines()[1:]:
    cols = line.split()
    if not cols or cols[0].startswith("[") or cols[0].startswith("selfsubject"):
        continue  # non-resource URLs and the self reviews: every authenticated user has them
    got[cols[0]] = set(" ".join(cols[3:]).strip("[]").split())
for name in sorted(set(want) | set(got)):
    if want.get(name) != got.get(name):
        print(f"{name}: rbac/operator.yaml grants {sorted(want.get(name, []))}, the API server {sorted(got.get(name, []))}")
        sys.exit(1)
print(f"{len(got)} resources, each with exactly the verbs of deploy/rbac/operator.yaml")
