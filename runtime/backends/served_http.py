"""A small JSON-over-HTTP client for serving engines (the standard library only).

One keep-alive connection per thread (the decoding loop keeps several requests in flight
from a pool of threads); server-sent events read line by line, so closing a stream early
closes its connection and the engine stops generating. Connection errors and 5xx answers
are retried with exponential backoff (``retries`` times, then a :class:`ServerError`);
a 4xx answer is not retried. ``timeout`` bounds each socket read, a last-resort guard.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from lmq.errors import LmqModelError

RETRYABLE = (ConnectionError, http.client.HTTPException, socket.timeout, OSError)


class ServerError(LmqModelError):
    """A request the server refused or could not answer."""

    def __init__(self, message: str, status: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status


class Client:
    def __init__(self, url: str, *, timeout: float = 600.0, retries: int = 4,
                 backoff: float = 0.25, api_key: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LmqModelError(f"not an http(s) server address: {url!r}",
                                hint="write it as http://HOST:PORT")
        self.url = f"{parts.scheme}://{parts.netloc}"
        self.base = parts.path.rstrip("/")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._local = threading.local()
        self.requests = 0  # sent, retries included

    # -- requests ----------------------------------------------------------------------

    def get(self, path: str) -> Any:
        return self._with_retries(lambda: self._json(self._send("GET", path, None)))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._with_retries(lambda: self._json(self._send("POST", path, body)))

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The events of a server-sent-event answer; closing the iterator early closes the
        connection (the engine then stops the request)."""
        response = self._with_retries(lambda: self._checked(self._send("POST", path, body)))
        finished = False
        try:
            while True:
                line = response.readline()
                if not line:
                    finished = True
                    return
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    finished = True
                    return
                yield json.loads(data)
        except RETRYABLE as error:
            raise ServerError(f"the connection to {self.url} broke during a request: "
                              f"{error}") from None
        finally:
            if finished:
                response.read()
            else:  # stopped early: this connection cannot carry another request
                self._drop()

    # -- plumbing ----------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            connection = kind(self._host, self._port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _send(self, method: str, path: str, body: dict[str, Any] | None,
              ) -> http.client.HTTPResponse:
        self.requests += 1
        data = None if body is None else json.dumps(body).encode()
        connection = self._connection()
        try:
            connection.request(method, self.base + path, body=data, headers=self._headers)
            return connection.getresponse()
        except BaseException:
            self._drop()
            raise

    def _checked(self, response: http.client.HTTPResponse) -> http.client.HTTPResponse:
        if response.status < 400:
            return response
        text = response.read().decode("utf-8", "replace")
        try:
            detail = json.loads(text)
            message = detail.get("error", detail)
            if isinstance(message, dict):
                message = message.get("message", message)
        except ValueError:
            message = text
        raise ServerError(f"{self.url} answered {response.status}: {str(message)[:500]}",
                          response.status)

    def _json(self, response: http.client.HTTPResponse) -> Any:
        text = self._checked(response).read()
        try:
            return json.loads(text)
        except ValueError:
            raise ServerError(f"{self.url} did not answer JSON: {text[:200]!r}") from None

    def _with_retries(self, attempt):
        for tries in range(self.retries + 1):
            try:
                return attempt()
            except ServerError as error:
                if error.status is None or error.status < 500 or tries == self.retries:
                    raise
            except RETRYABLE as error:
                self._drop()
                if tries == self.retries:
                    raise ServerError(f"cannot reach the server at {self.url}: {error}",
                                      hint="is the engine running and listening there?"
                                      ) from None
            time.sleep(self.backoff * 2 ** tries)
        raise AssertionError("unreachable")
