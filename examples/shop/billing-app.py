#!/usr/bin/env python3
"""The billing app of the example shop: receives the orders its sidecar pushes (push delivery,
docs/subscriptions.md) and counts them.

    POST /events/orders   a CloudEvent in binary mode: ce-* headers, the event's data as body
    GET  /counts          what it received: events by type, and the last one

Run by `make run` on 127.0.0.1:4480 (billing.yaml's appPort). Answers 204 to every event: a
real app would answer 5xx to have it retried, or 4xx to have it parked.
"""
import http.server
import json
import sys
import threading

lock = threading.Lock()
counts = {"received": 0, "byType": {}, "last": None}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the sidecar reuses its connections

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        event = {
            "id": self.headers.get("ce-id"),
            "type": self.headers.get("ce-type"),
            "order": self.headers.get("ce-subject"),
            "version": self.headers.get("ce-sidelogversion"),
            "attempt": self.headers.get("Sidelog-Delivery-Attempt"),
            "data": json.loads(body) if body else None,
        }
        with lock:
            counts["received"] += 1
            counts["byType"][event["type"]] = counts["byType"].get(event["type"], 0) + 1
            counts["last"] = event
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        if self.path != "/counts":
            self.send_error(404)
            return
        with lock:
            body = json.dumps(counts, indent=2).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 4480
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
