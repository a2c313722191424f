"""A streaming upstream for bench/proxy_stream.sh: GET /bytes/N answers N bytes of a fixed
pattern (64 KiB chunks), with a Content-Length when the query has `sized`, chunked otherwise.
Usage: stream_upstream.py PORT. Prints "ready" once listening."""
import http.server
import sys

CHUNK = bytes(range(256)) * 256  # 64 KiB


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path, _, query = self.path.partition("?")
        n = int(path.rsplit("/", 1)[-1])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        sized = "sized" in query
        if sized:
            self.send_header("Content-Length", str(n))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        left = n
        while left:
            piece = CHUNK[: min(left, len(CHUNK))]
            left -= len(piece)
            if sized:
                self.wfile.write(piece)
            else:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        if not sized:
            self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("ready", flush=True)
server.serve_forever()
