"""An OTLP/HTTP trace receiver that decodes every export with the OpenTelemetry project's own
protobuf definitions (`opentelemetry-proto`, PyPI), as a collector would, and records the spans.
It also answers as a trivial upstream API, so one process serves a test both roles.

    POST /v1/traces    decodes an ExportTraceServiceRequest (application/x-protobuf); 400 if it
                       does not decode; records each span with its resource, and the headers
    GET  /spans        the JSON list of spans seen: name, kind, status, attributes, resource,
                       headers, plus "raw" (the bodies' bytes as latin-1 text, to search)
    GET  /api/...      answers 200 {"ok": true} (the upstream role)

Prints `ready PORT` once it listens on 127.0.0.1 (a free port).
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

lock = threading.Lock()
spans = []
raw = []


def value(any_value):
    # One AnyValue as a plain Python value.
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, payload, content_type="application/json"):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path != "/v1/traces":
            return self.answer(404, {"error": "not found"})
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except Exception as error:  # a body that is not an export is the exporter's bug
            return self.answer(400, {"error": str(error)})
        headers = {k.lower(): v for k, v in self.headers.items()}
        with lock:
            raw.append(body.decode("latin-1"))
            for resource_spans in request.resource_spans:
                resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        spans.append({
                            "name": span.name,
                            "kind": MessageToDict(span).get("kind"),
                            "status": span.status.code,
                            "status_message": span.status.message,
                            "trace_id": span.trace_id.hex(),
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                            "attributes": {a.key: value(a.value) for a in span.attributes},
                            "resource": resource,
                            "scope": scope_spans.scope.name,
                            "headers": headers,
                        })
        # An empty ExportTraceServiceResponse: everything accepted.
        self.answer(200, b"", "application/x-protobuf")

    def do_GET(self):
        if self.path == "/spans":
            with lock:
                return self.answer(200, {"spans": spans, "raw": "".join(raw)})
        if self.path.startswith("/api/"):
            return self.answer(200, {"ok": True})
        self.answer(404, {"error": "not found"})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"ready {server.server_address[1]}", flush=True)
server.serve_forever()
