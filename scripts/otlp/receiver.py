#!/usr/bin/env python3
"""A minimal OTLP/HTTP metrics receiver for tests: what an OpenTelemetry collector would be given, as JSON lines.

    receiver.py --port 0 --out points.jsonl

Run it with the venv of setup.sh (opentelemetry-proto and protobuf). It listens on 127.0.0.1 only and
prints `listening on 127.0.0.1:PORT` (the real port when --port 0) on stdout as its first line.

POST /v1/metrics takes an ExportMetricsServiceRequest
- as protobuf (Content-Type application/x-protobuf), answered 200 with an empty serialized
  ExportMetricsServiceResponse (application/x-protobuf), or
- in the OTLP/HTTP JSON encoding (application/json), answered 200 with `{}` (application/json);
  exemplars' hex trace and span ids are read as the JSON encoding defines them,
optionally with Content-Encoding gzip, with Content-Length or chunked. The body, and the gzip body once
inflated, may be at most 16 MiB (413). Other paths: 404; other methods: 405; other content types or
encodings: 415; a body that does not decode: 400. Error answers are text/plain and say what was wrong.

Each data point of an accepted request becomes one line appended to --out, all lines of a request
written and flushed together before the answer is sent, so a test that has its 200 can read them:

    {"request": 1, "name": "...", "description": "...", "unit": "...", "type": "gauge",
     "resource": {"service.name": "..."}, "scope": "...", "attributes": {"k": "v"},
     "start_time_unix_nano": 0, "time_unix_nano": 1700000000000000000,
     "temporality": null, "monotonic": null, "value": 1.5}

- request: 1, 2, ... in the order requests were accepted by this process.
- type: gauge | sum | histogram | exponential_histogram | summary (a metric without data has no line).
- attributes, resource: attribute values as JSON (string, bool, int, float, list, object; bytes as
  base64; an empty value as null); scope: the instrumentation scope's name ("" when none).
- temporality: "delta" | "cumulative" | "unspecified" for sum, histogram and exponential_histogram,
  else null; monotonic: true | false for sum, else null.
- value: gauge and sum: the number (as_double a float, as_int an int; null when unset);
  histogram: {"count", "sum", "min", "max", "bucket_counts", "explicit_bounds"};
  exponential_histogram: {"count", "sum", "min", "max", "scale", "zero_count", "zero_threshold",
  "positive": {"offset", "bucket_counts"}, "negative": {...}};
  summary: {"count", "sum", "quantile_values": [{"quantile", "value"}]}.
  Optional sum/min/max are null when absent. Non-finite floats are written as the strings "NaN",
  "Infinity" and "-Infinity" (as the proto3 JSON mapping does), so every line is strict JSON.

Each request is logged on stderr (status, path, content type and encoding, size, data points and
metric names). SIGTERM or SIGINT: stops accepting, lets a request that is writing finish its lines,
closes --out, prints the totals on stderr and exits 0.
"""
import argparse
import base64
import json
import math
import signal
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

MAX_BODY = 16 * 1024 * 1024
PATH = "/v1/metrics"
PROTOBUF_TYPES = {"application/x-protobuf", "application/protobuf"}
JSON_TYPE = "application/json"
TEMPORALITY = {0: "unspecified", 1: "delta", 2: "cumulative"}


class RequestError(Exception):
    """An answer other than 200: the status and a text saying what was wrong."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


# Decoding ------------------------------------------------------------------------------------------

def number(x):
    """A float that strict JSON can carry."""
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    return x


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    return number(getattr(v, kind))


def attributes(key_values):
    return {kv.key: any_value(kv.value) for kv in key_values}


def optional(point, field):
    return number(getattr(point, field)) if point.HasField(field) else None


def number_value(point):
    kind = point.WhichOneof("value")
    return None if kind is None else number(getattr(point, kind))


def buckets(b):
    return {"offset": b.offset, "bucket_counts": list(b.bucket_counts)}


def points(request, sequence):
    """One dict per data point of an ExportMetricsServiceRequest, in the request's order."""
    for rm in request.resource_metrics:
        resource = attributes(rm.resource.attributes)
        for sm in rm.scope_metrics:
            scope = sm.scope.name
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                base = {"request": sequence, "name": metric.name, "description": metric.description,
                        "unit": metric.unit, "type": kind, "resource": resource, "scope": scope}
                if kind is None:
                    continue
                data = getattr(metric, kind)
                temporality = TEMPORALITY.get(data.aggregation_temporality, str(data.aggregation_temporality)) \
                    if kind in ("sum", "histogram", "exponential_histogram") else None
                monotonic = data.is_monotonic if kind == "sum" else None
                for p in data.data_points:
                    if kind in ("gauge", "sum"):
                        value = number_value(p)
                    elif kind == "histogram":
                        value = {"count": p.count, "sum": optional(p, "sum"), "min": optional(p, "min"),
                                 "max": optional(p, "max"), "bucket_counts": list(p.bucket_counts),
                                 "explicit_bounds": [number(b) for b in p.explicit_bounds]}
                    elif kind == "exponential_histogram":
                        value = {"count": p.count, "sum": optional(p, "sum"), "min": optional(p, "min"),
                                 "max": optional(p, "max"), "scale": p.scale, "zero_count": p.zero_count,
                                 "zero_threshold": number(p.zero_threshold),
                                 "positive": buckets(p.positive), "negative": buckets(p.negative)}
                    else:  # summary
                        value = {"count": p.count, "sum": number(p.sum),
                                 "quantile_values": [{"quantile": number(q.quantile), "value": number(q.value)}
                                                     for q in p.quantile_values]}
                    yield dict(base, attributes=attributes(p.attributes),
                               start_time_unix_nano=p.start_time_unix_nano, time_unix_nano=p.time_unix_nano,
                               temporality=temporality, monotonic=monotonic, value=value)


def hex_ids_to_base64(node):
    """OTLP/HTTP JSON writes exemplars' traceId and spanId as hex; protobuf's JSON parser wants base64."""
    if isinstance(node, list):
        for x in node:
            hex_ids_to_base64(x)
    elif isinstance(node, dict):
        for key, x in node.items():
            if key in ("traceId", "spanId", "trace_id", "span_id") and isinstance(x, str) and x:
                try:
                    node[key] = base64.b64encode(bytes.fromhex(x)).decode("ascii")
                except ValueError:
                    raise RequestError(400, f"{key} {x[:40]!r} is not hex, as the OTLP JSON encoding requires\n")
            else:
                hex_ids_to_base64(x)


def decode(body, json_encoded):
    request = ExportMetricsServiceRequest()
    if not json_encoded:
        try:
            request.ParseFromString(body)
        except DecodeError as e:
            raise RequestError(400, f"the body is not a protobuf ExportMetricsServiceRequest: {e}\n")
        return request
    try:
        tree = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise RequestError(400, f"the body is not JSON: {e}\n")
    if not isinstance(tree, dict):
        raise RequestError(400, "the body is not a JSON object (an ExportMetricsServiceRequest)\n")
    hex_ids_to_base64(tree)
    try:
        # Unknown fields are ignored, as OTLP receivers must for forward compatibility.
        json_format.ParseDict(tree, request, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError) as e:
        raise RequestError(400, f"the JSON is not an ExportMetricsServiceRequest: {e}\n")
    return request


def inflate(body):
    """Gunzips at most MAX_BODY bytes: a small body that inflates without bound is refused, not held."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, MAX_BODY + 1)
        if len(out) > MAX_BODY:
            raise RequestError(413, f"the gzip body inflates to more than {MAX_BODY} bytes\n")
        out += d.flush()
    except zlib.error as e:
        raise RequestError(400, f"Content-Encoding is gzip but the body does not inflate: {e}\n")
    if not d.eof:
        raise RequestError(400, "Content-Encoding is gzip but the gzip stream is truncated\n")
    return out


# Output --------------------------------------------------------------------------------------------

class Sink:
    """The --out file: the lines of one request are written and flushed under one lock."""

    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()
        self.requests = 0
        self.points = 0
        self.closed = False

    def write(self, request):
        with self.lock:
            if self.closed:
                raise RequestError(503, "the receiver is stopping\n")
            sequence = self.requests + 1
            written = list(points(request, sequence))
            self.file.write("".join(json.dumps(p, separators=(",", ":"), allow_nan=False) + "\n" for p in written))
            self.file.flush()
            self.requests = sequence
            self.points += len(written)
            return written

    def close(self):
        with self.lock:
            self.closed = True
            self.file.close()


# HTTP ----------------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so exporters can keep the connection; every answer carries Content-Length. Expect:
    # 100-continue (curl, for large bodies) is answered by BaseHTTPRequestHandler.
    protocol_version = "HTTP/1.1"
    server_version = "meetpunt-otlp-receiver"
    # An idle kept-alive connection is dropped after this, so a handler thread never waits for ever.
    timeout = 30

    def log_message(self, format, *args):
        pass  # one line per request from log(), not http.server's access log

    def log(self, status, detail):
        ctype = self.headers.get("Content-Type", "-") if self.headers else "-"
        encoding = self.headers.get("Content-Encoding", "") if self.headers else ""
        print(f"otlp-receiver: {status} {self.command} {self.path} {ctype}{' ' + encoding if encoding else ''}: {detail}",
              file=sys.stderr, flush=True)

    def answer(self, status, body, content_type, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def refuse(self, error, extra=()):
        self.log(error.status, error.message.strip())
        self.answer(error.status, error.message.encode(), "text/plain; charset=utf-8", extra)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise RequestError(411, "a Content-Length (or Transfer-Encoding: chunked) is required\n")
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise RequestError(400, f"Content-Length {length!r} is not a byte count\n")
        if n > MAX_BODY:
            self.close_connection = True  # the body is not read, so the connection cannot be reused
            raise RequestError(413, f"the body is {n} bytes; at most {MAX_BODY} are accepted\n")
        body = self.rfile.read(n)
        if len(body) != n:
            self.close_connection = True
            raise RequestError(400, f"the body ended after {len(body)} of {n} bytes\n")
        return body

    def read_chunked(self):
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise RequestError(400, f"bad chunk size line {line[:40]!r}\n")
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(body)
            if len(body) + size > MAX_BODY:
                self.close_connection = True
                raise RequestError(413, f"the chunked body exceeds {MAX_BODY} bytes; at most {MAX_BODY} are accepted\n")
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                self.close_connection = True
                raise RequestError(400, "the chunked body ended early\n")
            body += chunk
            self.rfile.readline(1024)  # the CRLF after the chunk

    def do_POST(self):
        try:
            if urlsplit(self.path).path != PATH:
                self.close_connection = True
                raise RequestError(404, f"no such path {self.path!r}: OTLP/HTTP metrics go to POST {PATH}\n")
            ctype = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if ctype not in PROTOBUF_TYPES and ctype != JSON_TYPE:
                self.close_connection = True
                raise RequestError(415, f"Content-Type {ctype or '(none)'!r} is not accepted: "
                                        f"send application/x-protobuf or application/json\n")
            encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("identity", "gzip", ""):
                self.close_connection = True
                raise RequestError(415, f"Content-Encoding {encoding!r} is not accepted: send gzip or none\n")
            raw = self.read_body()
            body = inflate(raw) if encoding == "gzip" else raw
            json_encoded = ctype == JSON_TYPE
            request = decode(body, json_encoded)
            written = self.server.sink.write(request)
        except RequestError as e:
            self.refuse(e)
            return
        except TimeoutError:
            self.close_connection = True
            self.log("-", f"the body did not arrive within {self.timeout} s; connection closed")
            return
        names = sorted({p["name"] for p in written})
        self.log(200, f"{len(raw)} bytes, {len(written)} data points"
                      f"{': ' + ', '.join(names) if names else ''}")
        if json_encoded:
            self.answer(200, b"{}", JSON_TYPE)
        else:
            self.answer(200, ExportMetricsServiceResponse().SerializeToString(), "application/x-protobuf")

    def not_post(self):
        self.close_connection = True
        if urlsplit(self.path).path == PATH:
            self.refuse(RequestError(405, f"{self.command} is not accepted: OTLP/HTTP metrics are sent with POST\n"),
                        extra=[("Allow", "POST")])
        else:
            self.refuse(RequestError(404, f"no such path {self.path!r}: OTLP/HTTP metrics go to POST {PATH}\n"))

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = not_post


class Server(ThreadingHTTPServer):
    # Request threads are daemons: an idle kept-alive connection must not hold the exit; a thread that
    # is writing holds Sink's lock, which close() waits for, so no line is cut.
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that went away mid-request is one line, not a traceback; anything else keeps its traceback.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            print(f"otlp-receiver: connection from {client_address[0]}:{client_address[1]} lost: {error!r}",
                  file=sys.stderr, flush=True)
        else:
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 (default) picks a free one")
    ap.add_argument("--out", required=True, help="JSON lines file, appended to: one line per data point")
    args = ap.parse_args()

    sink = Sink(args.out)
    server = Server(("127.0.0.1", args.port), Handler)
    server.sink = sink
    # The signals are blocked before any thread starts (threads inherit the mask) and taken by sigwait on
    # this thread: no handler runs in the middle of something, and serve_forever, on a thread of its own,
    # is stopped with shutdown(), which waits for it.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="serve")
    serving.start()
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    print(f"otlp-receiver: appending data points to {args.out}", file=sys.stderr, flush=True)
    received = signal.sigwait(stop_signals)
    print(f"otlp-receiver: {signal.Signals(received).name}, stopping", file=sys.stderr, flush=True)
    server.shutdown()
    serving.join()
    server.server_close()
    sink.close()
    print(f"otlp-receiver: stopped after {sink.requests} requests, {sink.points} data points", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
