"""Calling the service this one sits in front of (web → api), with a short timeout."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

# Sent on every upstream call. A demo app receiving it answers for itself and calls no
# upstream of its own, so a loop in the configuration (web → web) stops after one hop.
VIA_HEADER = "X-Demo-Via"
MAX_ANSWER_BYTES = 64 * 1024
IDENTITY_KEYS = ("service", "version", "replica")


@dataclass(frozen=True)
class Answer:
    """What one call to the upstream gave: its identity, or a reason it did not."""

    # The upstream's HTTP status as a string, or "error" when none came back. Bounded, so
    # it can be a metric label.
    code: str
    identity: dict[str, str] | None = None
    # Safe to show to anyone: never the URL, which may carry credentials.
    reason: str | None = None


class Upstream:
    def __init__(self, url: str, timeout: float, caller: str) -> None:
        parts = urlsplit(url)
        self._headers = {"Accept": "application/json", VIA_HEADER: caller}
        if parts.username is not None:
            # urllib does not turn userinfo into credentials by itself.
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        self._url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/", "", ""))
        self.timeout = timeout
        # No proxy handler: a call to a neighbour service must not leave through the
        # HTTP_PROXY a container may have in its environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self) -> Answer:
        request = urllib.request.Request(self._url, headers=self._headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                code = str(resp.status)
                body = resp.read(MAX_ANSWER_BYTES)
        except urllib.error.HTTPError as err:
            err.close()
            return Answer(str(err.code), reason=f"upstream answered {err.code}")
        except TimeoutError:
            return Answer("error", reason=f"upstream timed out after {self.timeout:g} s")
        except urllib.error.URLError as err:
            cause = err.reason
            if isinstance(cause, TimeoutError):
                return Answer("error", reason=f"upstream timed out after {self.timeout:g} s")
            kind = type(cause).__name__ if isinstance(cause, BaseException) else "URLError"
            return Answer("error", reason=f"upstream unreachable ({kind})")
        except OSError as exc:
            return Answer("error", reason=f"upstream unreachable ({type(exc).__name__})")
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not all(
            isinstance(data.get(key), str) for key in IDENTITY_KEYS
        ):
            return Answer(code, reason="upstream answered, but not as a demo service does")
        return Answer(code, identity={key: data[key] for key in IDENTITY_KEYS})
