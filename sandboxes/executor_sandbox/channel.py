"""Byte streams to and from a container: Docker's multiplexed frames, read against a deadline.

Two users: the harness channel (the container's attached stdin/stdout, one
JSON object per line) and ``docker exec`` output. Both read a raw socket with
our own wall-clock deadline, never docker-py's blocking helpers, so a silent or
flooding sandbox can never hang the executor.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

from executor.errors import InfrastructureError

STDOUT = 1
STDERR = 2
HEADER = struct.Struct(">BxxxL")
MAX_REPLY_BYTES = 64 * 1024 * 1024


class DeadlineExceeded(Exception):
    """The other side did not answer in time."""


class StreamClosed(Exception):
    """The other side closed the stream (the process or the container ended)."""


class SandboxLostError(InfrastructureError):
    """The sandbox stopped answering or died; what it was doing did not complete."""


class RequestFailed(InfrastructureError):
    """The harness refused or failed one request; the sandbox itself is still sound."""


def take_socket(hijacked: Any) -> tuple[socket.socket, bytes]:
    """The socket behind docker-py's ``attach_socket``/``exec_start(socket=True)``, and
    the stream bytes that http.client already buffered while reading the headers.

    docker-py hands out the raw socket below http.client's buffered reader; a
    process that writes at once can have its first frames in that buffer, and
    reading only the socket would lose them.
    """
    sock = getattr(hijacked, "_sock", hijacked)
    if not isinstance(sock, socket.socket):
        raise InfrastructureError(
            f"unsupported Docker connection type {type(sock).__name__}",
            hint="use a local unix socket or tcp DOCKER_HOST; ssh:// engines are not supported for sandboxes",
        )
    buffered = b""
    reader = getattr(
        getattr(getattr(getattr(hijacked, "_response", None), "raw", None), "_fp", None), "fp", None
    )
    if reader is not None:
        sock.setblocking(False)
        try:
            buffered = reader.read1(1 << 20) or b""
        except (BlockingIOError, OSError, ValueError):
            buffered = b""
        finally:
            sock.setblocking(True)
    return sock, buffered


def close_socket(sock: socket.socket) -> None:
    """End a hijacked stream now.

    ``close()`` alone leaves the descriptor open while docker-py's HTTP
    response still holds a file object on it (until a garbage collection),
    and the engine keeps copying the container's output into it: once that
    buffer fills, the engine stalls every attached stream of the container,
    ours included. ``shutdown`` ends the stream whatever holds the descriptor.
    """
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class FrameReader:
    """Reads Docker's 8-byte-header frames from a socket, honouring a deadline."""

    def __init__(self, sock: socket.socket, buffered: bytes = b"") -> None:
        self.sock = sock
        self.buffer = bytearray(buffered)

    def _fill(self, need: int, deadline: float) -> None:
        while len(self.buffer) < need:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError as exc:
                raise DeadlineExceeded from exc
            except OSError as exc:
                raise StreamClosed(str(exc)) from exc
            if not chunk:
                raise StreamClosed("end of stream")
            self.buffer += chunk

    def frame(self, deadline: float) -> tuple[int, bytes]:
        """The next (stream, payload) frame."""
        self._fill(HEADER.size, deadline)
        stream, size = HEADER.unpack_from(self.buffer)
        self._fill(HEADER.size + size, deadline)
        payload = bytes(self.buffer[HEADER.size : HEADER.size + size])
        del self.buffer[: HEADER.size + size]
        return stream, payload

    def frames(self, deadline: float) -> Iterator[tuple[int, bytes]]:
        """Frames until the stream ends (returns) or the deadline passes (raises)."""
        while True:
            try:
                yield self.frame(deadline)
            except StreamClosed:
                return


class HarnessChannel:
    """Requests to the harness over the container's attached stdin/stdout."""

    def __init__(self, sock: socket.socket, name: str, buffered: bytes = b"") -> None:
        self.sock = sock
        self.name = name
        self.reader = FrameReader(sock, buffered)
        self.pending = bytearray()
        self.next_id = 1
        self.stderr_tail = bytearray()

    def request(self, op: str, wait: float, **args: Any) -> dict[str, Any]:
        """Send one request and wait for its reply; replies to other (abandoned) ids are skipped."""
        request_id = self.next_id
        self.next_id += 1
        line = json.dumps({"id": request_id, "op": op, "args": args}, separators=(",", ":")) + "\n"
        deadline = time.monotonic() + wait
        try:
            self.sock.settimeout(wait)
            self.sock.sendall(line.encode())
            while True:
                reply = self._read_line(deadline)
                if reply.get("id") == request_id:
                    break
        except DeadlineExceeded as exc:
            raise SandboxLostError(
                f"sandbox {self.name} did not answer {op!r} within {wait:.0f} s",
                hint="it is destroyed and replaced; if this repeats, see: executor doctor",
            ) from exc
        except (StreamClosed, OSError) as exc:
            raise SandboxLostError(f"sandbox {self.name} closed its channel during {op!r}: {exc}") from exc
        if not reply.get("ok"):
            raise RequestFailed(f"sandbox {self.name} failed {op!r}: {reply.get('error')}")
        result = reply.get("result")
        return result if isinstance(result, dict) else {}

    def _read_line(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self.pending:
            stream, payload = self.reader.frame(deadline)
            if stream == STDERR:
                self.stderr_tail = (self.stderr_tail + payload)[-4096:]
                continue
            self.pending += payload
            if len(self.pending) > MAX_REPLY_BYTES:
                raise StreamClosed(f"reply larger than {MAX_REPLY_BYTES} bytes")
        line, _, rest = bytes(self.pending).partition(b"\n")
        self.pending = bytearray(rest)
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise StreamClosed(f"unreadable reply {line[:200]!r}") from exc
        if not isinstance(message, dict):
            raise StreamClosed(f"unreadable reply {line[:200]!r}")
        return message

    def close(self) -> None:
        close_socket(self.sock)
