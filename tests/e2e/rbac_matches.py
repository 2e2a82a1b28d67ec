#!/usr/bin/python3
"""Reads `kubectl auth can-i --list` on stdin and checks that its resource rows grant exactly the
verbs of the ClusterRole and Role in the RBAC file given (argv[1]): nothing missing, nothing more.
Rules limited to resourceNames are compared as their own rows, one per name."""
import re, sys, yaml
rbac, listing = sys.argv[1], sys.stdin.read()
want = {}
for doc in yaml.safe_load_all(open(rbac)):
    if doc and doc.get("kind") in ("ClusterRole", "Role"):
        for r in doc["rules"]:
            for names in r.get("resourceNames", []) or [""]:  # a row per name, as kubectl lists
                for g in r["apiGroups"]:
                    for res in r["resources"]:
                        base, _, sub = res.partition("/")
                        name = base + ("." + g if g else "") + ("/" + sub if sub else "")
                        want.setdefault((name, names), set()).update(r["verbs"])
got = {}
for line in listing.splitlines()[1:]:
    m = re.match(r"^(\S+)\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s*$", line)
    if not m or m.group(1).startswith("selfsubject"):
        continue  # non-resource URLs and the self reviews: every authenticated user has them
    for names in m.group(3).split() or [""]:
        got.setdefault((m.group(1), names), set()).update(m.group(4).split())
for key in sorted(set(want) | set(got)):
    if want.get(key) != got.get(key):
        label = key[0] + (f" (resourceNames {key[1]})" if key[1] else "")
        print(f"{label}: {rbac} grants {sorted(want.get(key, []))}, the API server {sorted(got.get(key, []))}")
        sys.exit(1)
print(f"{len(got)} rows, each with exactly the verbs of {rbac}")
