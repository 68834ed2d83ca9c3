#!/usr/bin/env python3
"""Runs the front door's template (ops/nginx/boxoffice.conf.template, which scripts/up,
the tests and compose.yaml all run) in a real nginx, on loopback, in front of two
stand-ins that answer with their own name and the path they were asked for, and
checks where each route lands.

    python3 ops/nginx/check_routes.py [NGINX_BINARY]     (scripts/check-ops runs it)

The placeholders are filled with a scratch directory, a free loopback port and the
stand-ins' addresses. Everything it starts is stopped before it exits.
"""

import http.client
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "boxoffice.conf.template"

# (method, path, the service that must answer, the path it must see)
ROUTES = [
    ("GET", "/v1/events", "query-api", "/v1/events"),
    ("HEAD", "/v1/events/42", "query-api", "/v1/events/42"),
    ("GET", "/v1/bookings/7?x=1", "query-api", "/v1/bookings/7?x=1"),
    ("POST", "/v1/events", "command-api", "/v1/events"),
    ("POST", "/v1/events/42/bookings", "command-api", "/v1/events/42/bookings"),
    ("POST", "/v1/bookings/7/cancel", "command-api", "/v1/bookings/7/cancel"),
    ("GET", "/v1/admin/sagas/parked", "command-api", "/v1/admin/sagas/parked"),
    ("POST", "/v1/admin/sagas/9/retry", "command-api", "/v1/admin/sagas/9/retry"),
    ("GET", "/v1/admin/projections", "query-api", "/v1/admin/projections"),
    ("POST", "/v1/admin/projections/bookings/rebuild", "query-api", "/v1/admin/projections/bookings/rebuild"),
    ("GET", "/v1/admin/parked", "query-api", "/v1/admin/parked"),
    ("POST", "/v1/admin/parked/12/retry", "query-api", "/v1/admin/parked/12/retry"),
    ("GET", "/v1/audit/verify", "query-api", "/v1/audit/verify"),
    ("GET", "/v1/audit/export?after=0", "query-api", "/v1/audit/export?after=0"),
    ("GET", "/command-api/openapi.json", "command-api", "/openapi.json"),
    ("GET", "/command-api/docs", "command-api", "/docs"),
    ("GET", "/query-api/openapi.json", "query-api", "/openapi.json"),
    ("GET", "/query-api/docs", "query-api", "/docs"),
    ("GET", "/docs/swagger-ui.css", "query-api", "/docs/swagger-ui.css"),
]
# (method, path, status) answered by the gateway itself.
OWN = [
    ("GET", "/health", 200),
    ("GET", "/docs", 200),
    ("GET", "/openapi.json", 404),
    ("GET", "/metrics", 404),
    ("GET", "/health/live", 404),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stand_in(name):
    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = json.dumps({"service": name, "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Service", name)
            self.send_header("X-Path", self.path)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    nginx = sys.argv[1] if len(sys.argv) > 1 else shutil.which("nginx") or "/usr/sbin/nginx"
    command, query = stand_in("command-api"), stand_in("query-api")
    port = free_port()
    failures = []
    with tempfile.TemporaryDirectory(prefix="check-routes-") as d:
        conf = TEMPLATE.read_text()
        for name, value in {
            "DIR": d,
            "LOGS": d,
            "LISTEN": f"127.0.0.1:{port}",
            "TLS": "",
            "COMMAND_API": f"127.0.0.1:{command.server_port}",
            "QUERY_API": f"127.0.0.1:{query.server_port}",
            "RATE": "1000",
            "BURST": "1000",
        }.items():
            conf = conf.replace(f"@@{name}@@", value)
        if "@@" in conf:
            print("the template has a placeholder this check does not know")
            return 1
        (Path(d) / "nginx.conf").write_text(conf)
        proc = subprocess.Popen(
            [nginx, "-p", d, "-c", f"{d}/nginx.conf", "-e", f"{d}/error.log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        print("nginx did not start:", proc.stderr.read().decode() if proc.poll() is not None else "timed out")
                        return 1
                    time.sleep(0.05)

            def ask(method, path):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                body = b"{}" if method == "POST" else None
                headers = {"Content-Type": "application/json"} if body else {}
                c.request(method, path, body=body, headers=headers)
                r = c.getresponse()
                r.read()
                c.close()
                return r

            for method, path, service, seen in ROUTES:
                r = ask(method, path)
                got = (r.status, r.getheader("X-Service"), r.getheader("X-Path"))
                ok = got == (200, service, seen)
                print(f"  {'ok  ' if ok else 'FAIL'} {method:4} {path} -> {got[1]} {got[2]} ({got[0]})")
                if not ok:
                    failures.append(f"{method} {path}: wanted {service} {seen}, got {got}")
            for method, path, status in OWN:
                r = ask(method, path)
                ok = r.status == status and r.getheader("X-Service") is None
                print(f"  {'ok  ' if ok else 'FAIL'} {method:4} {path} -> the gateway itself ({r.status})")
                if not ok:
                    failures.append(f"{method} {path}: wanted {status} from the gateway, got {r.status} {r.getheader('X-Service')}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            command.shutdown()
            query.shutdown()
    if failures:
        print("routes wrong:\n  " + "\n  ".join(failures))
        return 1
    print(f"  {len(ROUTES) + len(OWN)} routes as documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())
