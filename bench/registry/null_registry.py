#!/usr/bin/env python3
"""A registry that stores nothing: the push lower bound for bench/registry/run.sh.

It answers a client's push as a registry would (blob HEAD 404, upload POST/PATCH/PUT, manifest
PUT) but reads request bodies into one buffer and drops them: no hashing, no file, no fsync.
The push time skopeo reaches against it is what the client and the machine cost by themselves,
so it bounds what any real registry can reach in the benchmark. Pulls are not served.

    null_registry.py HOST:PORT
"""
import hashlib
import socket
import sys
import threading
import uuid
from urllib.parse import parse_qs

BUF_LOCAL = threading.local()  # each connection thread's receive buffer


def read_head(conn, pending):
    while b"\r\n\r\n" not in pending:
        data = conn.recv(65536)
        if not data or data[:1] == b"\x16":  # closed, or a TLS hello: the client falls back to HTTP
            return None, b""
        pending += data
    head, rest = pending.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return (method, target, headers), rest


def drain_length(conn, pending, length, keep):
    """Reads length body bytes; returns (bytes kept if keep, leftover)."""
    kept = bytearray()
    take = min(len(pending), length)
    if keep:
        kept += pending[:take]
    length -= take
    rest = pending[take:]
    while length > 0:
        n = conn.recv_into(BUF_LOCAL.buf, min(length, len(BUF_LOCAL.buf)))
        if n == 0:
            raise ConnectionError("client closed mid-body")
        if keep:
            kept += BUF_LOCAL.buf[:n]
        length -= n
    return bytes(kept), bytes(rest)


def drain_chunked(conn, pending):
    """Reads and drops a chunked body; returns (size, leftover). Parses in one 1 MiB buffer."""
    buf = BUF_LOCAL.buf
    view = memoryview(buf)
    n = len(pending)
    buf[:n] = pending
    pos = total = skip = 0  # skip: chunk data (and its CRLF) still to drop

    def fill(start):
        got = conn.recv_into(view[start:])
        if got == 0:
            raise ConnectionError("client closed mid-body")
        return start + got

    while True:
        if skip:
            if n - pos >= skip:
                pos, skip = pos + skip, 0
            else:
                skip -= n - pos
                pos, n = 0, fill(0)
            continue
        eol = buf.find(b"\r\n", pos, n)
        if eol < 0:  # a partial line: keep it at the front and read more
            view[: n - pos] = view[pos:n]
            pos, n = 0, fill(n - pos)
            continue
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            while buf.find(b"\r\n", pos, n) < 0:  # no trailers: the empty line ends the body
                view[: n - pos] = view[pos:n]
                pos, n = 0, fill(n - pos)
            end = buf.find(b"\r\n", pos, n) + 2
            return total, bytes(buf[end:n])
        total += size
        skip = size + 2


def respond(conn, status, headers=(), body=b""):
    reason = {200: "OK", 201: "Created", 202: "Accepted", 404: "Not Found"}[status]
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}",
            "Docker-Distribution-API-Version: registry/2.0", *headers]
    conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)


def handle(conn):
    BUF_LOCAL.buf = bytearray(1 << 20)
    pending = b""
    try:
        while True:
            request, pending = read_head(conn, pending)
            if request is None:
                return
            method, target, headers = request
            path, _, query = target.partition("?")
            body_len = 0
            manifest = b""
            if headers.get("transfer-encoding", "").lower() == "chunked":
                body_len, pending = drain_chunked(conn, pending)
            elif "content-length" in headers:
                body_len = int(headers["content-length"])
                manifest, pending = drain_length(conn, pending, body_len, "/manifests/" in path)
            route(conn, method, path, query, body_len, manifest)
    except (ConnectionError, OSError):
        return
    finally:
        conn.close()


def route(conn, method, path, query, body_len, manifest):
    parts = path.split("/")
    if path in ("/v2", "/v2/"):
        return respond(conn, 200, body=b"{}")
    if "/blobs/uploads/" in path and method == "POST":
        loc = path.rstrip("/") + "/" + str(uuid.uuid4())
        return respond(conn, 202, [f"Location: {loc}", "Range: 0-0"])
    if "/blobs/uploads/" in path and method == "PATCH":
        return respond(conn, 202, [f"Location: {path}", f"Range: 0-{max(body_len - 1, 0)}"])
    if "/blobs/uploads/" in path and method == "PUT":
        digest = parse_qs(query).get("digest", [""])[0]
        repo = path.split("/blobs/")[0]
        return respond(conn, 201, [f"Location: {repo}/blobs/{digest}",
                                   f"Docker-Content-Digest: {digest}"])
    if len(parts) > 3 and parts[-2] == "manifests" and method == "PUT":
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        return respond(conn, 201, [f"Location: {path}", f"Docker-Content-Digest: {digest}"])
    body = b'{"errors":[{"code":"BLOB_UNKNOWN","message":"nothing is stored here"}]}'
    if method == "HEAD":  # a HEAD answer has no body: say 0 rather than send one
        body = b""
    respond(conn, 404, ["Content-Type: application/json"], body)


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    server = socket.create_server((host, int(port)))
    while True:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
