"""The process of a lab pod: a tiny HTTP server that never resolves names.

Run inside the pod's network namespace as `python3 -I -S pod_server.py --port P --name POD`.
http.server's HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that stalls ~10 s
in a namespace without DNS: skipped here. Standard library only (started with -I -S for speed).
"""

from __future__ import annotations

import argparse
import http.server
import socket
import socketserver


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class DualServer(Server):
    """A dual-stack pod: one IPv6 socket that also takes IPv4 (v4-mapped) connections."""

    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def make_handler(name: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "clusterfix-lab-pod/1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            local = self.connection.getsockname()[0]
            client = self.client_address[0].removeprefix("::ffff:")
            body = f"{name} {local.removeprefix('::ffff:')} from {client}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--dual", action="store_true", help="listen on IPv6 and IPv4")
    args = ap.parse_args()
    socket.setdefaulttimeout(10)
    if args.dual:
        srv: Server = DualServer(("::", args.port), make_handler(args.name))
    else:
        srv = Server(("0.0.0.0", args.port), make_handler(args.name))
    srv.serve_forever()


if __name__ == "__main__":
    main()
