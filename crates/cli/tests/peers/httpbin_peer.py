"""httpbin (PyPI) on a free loopback port: binds port 0, prints "ready PORT", then serves until
killed. (`python -m httpbin.core --port N` needs the port chosen beforehand.)"""

from httpbin import app
from werkzeug.serving import make_server

server = make_server("127.0.0.1", 0, app, threaded=True)
print(f"ready {server.server_port}", flush=True)
server.serve_forever()
