#!/usr/bin/env python3
"""bench/peers/blocking_proxy.py: the one-operator proxy of the first slide.

One process, one thread, one client at a time: accept a caller, read its
request, walk across the building (forward it to the origin over one kept-alive
upstream connection and wait for the whole answer), relay the answer, hang up
(Connection: close), take the next caller. Everyone else waits in the listen
queue, however short their own question.

    blocking_proxy.py --listen 127.0.0.1:PORT --origin 127.0.0.1:PORT
"""
import argparse
import http.client
import signal
import socketserver
import sys

HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
       "transfer-encoding", "upgrade", "content-length"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--origin", required=True)
    args = ap.parse_args()
    lhost, lport = args.listen.rsplit(":", 1)
    ohost, oport = args.origin.rsplit(":", 1)
    upstream = http.client.HTTPConnection(ohost, int(oport), timeout=120)

    class Operator(socketserver.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline(65537).decode("latin-1")
            parts = line.split()
            if len(parts) != 3:
                return
            method, target, _ = parts
            headers = {}
            while True:
                h = self.rfile.readline(65537).decode("latin-1")
                if h in ("\r\n", "\n", ""):
                    break
                name, _, value = h.partition(":")
                if name.strip().lower() not in HOP:
                    headers[name.strip()] = value.strip()
            n = int(headers.pop("Content-Length", headers.pop("content-length", 0)) or 0)
            body = self.rfile.read(n) if n else None
            for attempt in (0, 1):  # once more on a fresh connection
                try:
                    upstream.request(method, target, body=body, headers=headers)
                    r = upstream.getresponse()
                    data = r.read()
                    break
                except (http.client.HTTPException, OSError):
                    upstream.close()
                    if attempt:
                        self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\n"
                                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                        return
            out = ["HTTP/1.1 %d %s\r\n" % (r.status, r.reason)]
            out += ["%s: %s\r\n" % (k, v) for k, v in r.getheaders()
                    if k.lower() not in HOP]
            out.append("Content-Length: %d\r\nConnection: close\r\n\r\n" % len(data))
            self.wfile.write("".join(out).encode("latin-1") + data)

    class Server(socketserver.TCPServer):
        allow_reuse_address = True
        request_queue_size = 4096  # the phone system queues thousands of calls

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Server((lhost, int(lport)), Operator) as srv:
        print("listening on %s:%d" % srv.server_address, flush=True)
        srv.serve_forever()


if __name__ == "__main__":
    main()
