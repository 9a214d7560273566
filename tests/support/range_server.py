#!/usr/bin/env python3
"""A static file server for download tests: HTTP/1.1 with Range and If-Range, plus faults on demand.

    range_server.py --root DIR --port-file FILE [--log FILE] [--control FILE]

Binds 127.0.0.1 on a free port and writes the port number to --port-file once it accepts
connections. Serves the files below --root with ETag, Last-Modified and Accept-Ranges, answering
`Range: bytes=a-b` / `bytes=a-` / `bytes=-n` with 206 (416 past the end) unless If-Range names
another version of the file.

Faults come from the JSON object in --control (re-read on every request; its counters restart
whenever its content changes) or from the query string (?cut=100&fail=2...), which wins:

    fail_first  / fail=K          answer the first K requests with fail_status (default 503)
    fail_status / status=S
    retry_after / retry_after=N   send Retry-After: N with those failures
    cut_after   / cut=N           send only N bytes of the body, then close the connection...
    cut_requests / cut_requests=C ...for the first C served requests (default 1)
    ignore_range / ignore_range=1 answer every request with 200 and the whole file
    rate        / rate=B          send at most B bytes per second

Counters are per request target (path and query). Every request is appended to --log as one JSON line, written before the
response: {"method", "path", "query", "range", "if_range", "status", "cut_after"}.
"""
import argparse
import email.utils
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE_LOCK = threading.Lock()
STATE = {"control_text": None, "failed": {}, "served": {}}


def read_control(path):
    """Returns the control settings, restarting the counters when the file changed."""
    text = ""
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    with STATE_LOCK:
        if text != STATE["control_text"]:
            STATE["control_text"] = text
            STATE["failed"] = {}
            STATE["served"] = {}
    return json.loads(text) if text.strip() else {}


def settings_for(control, query):
    q = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
    def pick(key, qkey, default, cast=int):
        if qkey in q:
            return cast(q[qkey])
        return cast(control.get(key, default))
    return {
        "fail_first": pick("fail_first", "fail", 0),
        "fail_status": pick("fail_status", "status", 503),
        "retry_after": pick("retry_after", "retry_after", -1),
        "cut_after": pick("cut_after", "cut", -1),
        "cut_requests": pick("cut_requests", "cut_requests", 1),
        "ignore_range": pick("ignore_range", "ignore_range", 0, lambda v: int(str(v).lower() in ("1", "true"))),
        "rate": pick("rate", "rate", 0),
    }


def parse_range(header, size):
    """(start, end) inclusive for a single byte range, "unsatisfiable", or None (ignore the header)."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes="):].strip().partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return None
            return (max(0, size - n), size - 1) if size else "unsatisfiable"
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    if end < start:
        return None
    return start, min(end, size - 1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "range_server/1"

    def log_message(self, *args):  # quiet: the request log is the JSON file
        pass

    def record(self, entry):
        if not self.server.log_path:
            return
        with STATE_LOCK:
            with open(self.server.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
                f.flush()

    def do_HEAD(self):
        self.handle_request(head=True)

    def do_GET(self):
        try:
            self.handle_request(head=False)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-body (e.g. a cancelled download)

    def handle_request(self, head):
        parsed = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parsed.path)
        control = read_control(self.server.control_path)
        s = settings_for(control, parsed.query)
        entry = {"method": self.command, "path": path, "query": parsed.query,
                 "range": self.headers.get("Range"), "if_range": self.headers.get("If-Range"),
                 "status": None, "cut_after": None}

        with STATE_LOCK:
            failed = STATE["failed"].get(self.path, 0)
            if failed < s["fail_first"]:
                STATE["failed"][self.path] = failed + 1
                fail = True
            else:
                fail = False
        if fail:
            entry["status"] = s["fail_status"]
            self.record(entry)
            body = b"temporarily unavailable\n"
            self.send_response(s["fail_status"])
            if s["retry_after"] >= 0:
                self.send_header("Retry-After", str(s["retry_after"]))
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return

        file = os.path.realpath(os.path.join(self.server.root, path.lstrip("/")))
        if not file.startswith(self.server.root + os.sep) or not os.path.isfile(file):
            entry["status"] = 404
            self.record(entry)
            body = b"not found\n"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return

        st = os.stat(file)
        size = st.st_size
        etag = '"%x-%x"' % (size, st.st_mtime_ns)
        last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        wanted = None if s["ignore_range"] else parse_range(self.headers.get("Range"), size)
        if_range = self.headers.get("If-Range")
        if wanted is not None and if_range is not None and if_range not in (etag, last_modified):
            wanted = None  # another version of the file: send it all

        if wanted == "unsatisfiable":
            entry["status"] = 416
            self.record(entry)
            self.send_response(416)
            self.send_header("Content-Range", "bytes */%d" % size)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return

        start, end = wanted if wanted else (0, size - 1)
        length = end - start + 1 if size else 0
        with STATE_LOCK:
            served = STATE["served"].get(self.path, 0)
            STATE["served"][self.path] = served + 1
        cut = s["cut_after"] if s["cut_after"] >= 0 and served < s["cut_requests"] else None
        entry["status"] = 206 if wanted else 200
        entry["cut_after"] = cut
        self.record(entry)

        self.send_response(entry["status"])
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "none" if s["ignore_range"] else "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", last_modified)
        if wanted:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.end_headers()
        if head:
            return
        self.wfile.flush()
        with open(file, "rb") as f:
            f.seek(start)
            remaining = length
            sent = 0
            began = time.monotonic()
            while remaining > 0:
                chunk = f.read(min(16384, remaining))
                if not chunk:
                    break
                if cut is not None and sent + len(chunk) > cut:
                    chunk = chunk[: cut - sent]
                if chunk:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    sent += len(chunk)
                    remaining -= len(chunk)
                if cut is not None and sent >= cut:
                    # Drop the connection mid-body: the client sees a short transfer.
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if s["rate"] > 0:
                    ahead = sent / s["rate"] - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log")
    parser.add_argument("--control")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.root = os.path.realpath(args.root)
    server.log_path = args.log
    server.control_path = args.control
    temp = args.port_file + ".tmp"
    with open(temp, "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.replace(temp, args.port_file)  # the port appears whole, once the socket listens
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
