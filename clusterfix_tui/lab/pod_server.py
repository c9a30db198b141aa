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


def make_handler(name: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "clusterfix-lab-pod/1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            local = self.connection.getsockname()[0]
            body = f"{name} {local} from {self.client_address[0]}\n".encode()
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
    args = ap.parse_args()
    socket.setdefaulttimeout(10)
    srv = Server(("0.0.0.0", args.port), make_handler(args.name))
    srv.serve_forever()


if __name__ == "__main__":
    main()
