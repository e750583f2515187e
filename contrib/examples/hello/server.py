"""The hello example app: answers GET /health with "ok", GET / with the version the
build step wrote, and echoes text messages on a WebSocket at /ws. Python 3 standard library
only; listens on 127.0.0.1:$PORT."""

import base64
import hashlib
import os
import struct
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))


def read_file(name, default):
    try:
        with open(os.path.join(HERE, name), encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return default


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, text):
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            # A build that writes "unhealthy" makes the health check fail (for tests).
            if os.path.exists(os.path.join(HERE, "unhealthy")):
                self.answer(500, "unhealthy")
            else:
                self.answer(200, "ok")
        elif path == "/":
            self.answer(200, read_file("version.txt", "dev"))
        elif path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self.websocket()
        else:
            self.answer(404, "not found")

    def websocket(self):
        """RFC 6455, as little as an echo needs: unfragmented text frames up to 64 KiB."""
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", self.rfile.read(2))[0]
            elif n == 127:
                return
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            if opcode == 8:  # close
                self.wfile.write(b"\x88\x00")
                return
            if opcode == 1:
                reply = (read_file("version.txt", "dev") + ":").encode() + data
                size = bytes([len(reply)]) if len(reply) < 126 else b"\x7e" + struct.pack(
                    "!H", len(reply))
                self.wfile.write(b"\x81" + size + reply)
                self.wfile.flush()

    def log_message(self, fmt, *args):
        sys.stdout.write("hello: %s %s\n" % (self.address_string(), fmt % args))
        sys.stdout.flush()


def main():
    port = int(os.environ.get("PORT", "3000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True

    def stop(signum, frame):
        sys.stdout.write("hello: stopping\n")
        sys.stdout.flush()
        os._exit(0)

    # HELLO_IGNORE_TERM=1 plays an app that ignores SIGTERM (for tests of the stop timeout).
    if os.environ.get("HELLO_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write("hello: listening on 127.0.0.1:%d\n" % port)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
