"""Does the MLflow tracking server answer? Asked once, within seconds, before a run starts.

MLflow's client retries a server that does not answer for minutes, ignoring Ctrl-C meanwhile,
and ends with urllib3's text. One TCP connection with a short timeout says the same at once:
a healthy server costs one connection and no request. Only http(s) addresses are tried (a
local sqlite or file store needs no server); through $HTTP(S)_PROXY, the proxy is tried.
Standard library only: the CLI asks this before it imports torch or mlflow.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from dlexp.errors import DlexpError

TIMEOUT = 3.0  # seconds for the name lookup, and as many for the connection
ENV = "MLFLOW_TRACKING_URI"


def mlflow_uri(settings: Mapping[str, Any]) -> tuple[str, str]:
    """(the tracking URI, where it was set); ("", "") for the local store."""
    if settings.get("tracking_uri"):
        return str(settings["tracking_uri"]), "logger.mlflow.tracking_uri"
    if os.environ.get(ENV):
        return os.environ[ENV], ENV
    return "", ""


def check_servers(loggers: Mapping[str, Any] | None, output_root: Any) -> None:
    """Raise DlexpError, with what to do, when a chosen logger's server does not answer."""
    if not isinstance(loggers, Mapping) or "mlflow" not in loggers:
        return
    uri, source = mlflow_uri(loggers["mlflow"] or {})
    check_mlflow(uri, source, output_root)


def check_mlflow(uri: str, source: str, output_root: Any) -> None:
    try:
        parts = urlsplit(uri)
    except ValueError as exc:  # e.g. "http://[::1": an IPv6 address without its "]"
        raise DlexpError(f"{source}={shown(uri)}: not a URI that can be read ({exc})") from None
    problem = unreachable(uri)
    if problem is None:
        return
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if "refused" in problem and local:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        todo = f"Start it (mlflow server --host {parts.hostname} --port {port}), "
    elif "refused" in problem:
        todo = "Start the server there, "
    elif "not found" in problem:
        todo = "Check the host name, "
    else:
        todo = "Check that the server runs and can be reached from here, "
    unset = "leave it unset" if source.startswith("logger.") else f"unset {source}"
    store = os.path.join(str(output_root), "mlflow.db")
    raise DlexpError(
        f"{source}={shown(uri)}: no MLflow tracking server answers there ({problem}). {todo}"
        f"correct {source}, or {unset} to log to a local store in {store}."
    )


def shown(uri: str) -> str:
    """`uri` as a message may print it: without a password in it."""
    head, at, tail = uri.rpartition("@")
    if not at or "://" not in head:
        return uri
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.partition(':')[0]}:***@{tail}" if ":" in user else uri


def unreachable(uri: str, timeout: float = TIMEOUT) -> str | None:
    """Why nothing answers at `uri`, or None when something does (or it is not http(s)).
    Each of up to 4 addresses of the host gets `timeout` to connect."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    if not parts.hostname:
        return "it names no host"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "its port is not a number from 0 to 65535"
    host, through = parts.hostname, ""
    proxy = _proxy(parts.scheme, host)
    if proxy is not None:
        (host, port), through = proxy, f" (through the proxy {proxy[0]}:{proxy[1]})"
    addresses = _lookup(host, port, timeout)
    if isinstance(addresses, str):
        return addresses + through
    why = "no address"
    for family, kind, proto, _, address in addresses:
        try:  # a family the kernel lacks (IPv6 switched off) fails here: the next address
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
                return None
        except ConnectionRefusedError:
            why = f"connection refused at {host}:{port}"
        except TimeoutError:
            why = f"{host}:{port} did not answer within {timeout:g} s"
        except OSError as exc:
            why = f"{host}:{port}: {exc.strerror or exc}"
    return why + through


def _lookup(host: str, port: int, timeout: float) -> list[Any] | str:
    """The addresses of `host`, or why there are none; a lookup that hangs (no DNS server
    answers) is given up after `timeout`, in a thread of its own."""
    found: list[Any] = []

    def look() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            found.append(exc)

    thread = threading.Thread(target=look, daemon=True, name="dlexp-lookup")
    thread.start()
    thread.join(timeout)
    if not found:
        return f"looking up the host {host} took longer than {timeout:g} s"
    if isinstance(found[0], socket.gaierror):
        return f"host {host} not found: {found[0].strerror}"
    if isinstance(found[0], OSError):
        return f"host {host}: {found[0]}"
    return list(found[0])[:4]


def _proxy(scheme: str, host: str) -> tuple[str, int] | None:
    """The proxy that `requests` would go through for `host` ($HTTP(S)_PROXY, $ALL_PROXY,
    $NO_PROXY)."""
    import urllib.request  # a few milliseconds: only for an http(s) tracking URI

    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme) or proxies.get("all")  # $ALL_PROXY, as requests reads it
    if not proxy or urllib.request.proxy_bypass_environment(host):
        return None
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None
