"""The hello example app: answers GET /health with "ok" and GET / with the version the
build step wrote. Python 3 standard library only; listens on 127.0.0.1:$PORT."""

import os
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
        else:
            self.answer(404, "not found")

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
