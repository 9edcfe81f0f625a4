"""Resolving ``@NAME`` the way the Rust side does (PROTOCOL.md appendix):
the services file named by ``SWITCHBOARD_SERVICES`` first, then this
user's registry directory of running servers."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tempfile
from typing import Any, Dict, List, Optional

from .connector import Connector, b64decode
from .errors import ConnectorError

SERVICES_ENV_VAR = "SWITCHBOARD_SERVICES"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def check_name(name: str) -> None:
    """Raises :class:`ConnectorError` unless ``name`` is a service name:
    1 to 64 of ``[A-Za-z0-9._-]``, starting with a letter or digit."""
    if not _NAME.match(name):
        raise ConnectorError(
            f"{name!r} is not a service name: 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def registry_dir() -> str:
    """This user's registry directory (not checked)."""
    if sys.platform == "win32":
        return os.path.join(os.environ.get("LOCALAPPDATA", ""), "switchboard", "registry")
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):
        return os.path.join(runtime, "switchboard")
    return os.path.join(tempfile.gettempdir(), f"switchboard-{os.geteuid()}")


def _check_private(path: str) -> None:
    if sys.platform == "win32":
        return
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ConnectorError(f"the registry {path} is not a real directory; refusing it (remove it)")
    if info.st_uid != os.geteuid():
        raise ConnectorError(f"the registry {path} belongs to user {info.st_uid}, not to this user: refusing it")
    if info.st_mode & 0o077:
        raise ConnectorError(f"the registry {path} may be entered by other users (chmod 700 it)")


def lookup_registry(name: str, directory: Optional[str] = None) -> Optional[Connector]:
    """The connector registered under ``name`` (live or not), or ``None``."""
    directory = directory or registry_dir()
    try:
        _check_private(directory)
    except FileNotFoundError:
        return None
    path = os.path.join(directory, f"{name}.json")
    try:
        with open(path, "rb") as file:
            entry = json.loads(file.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ConnectorError(f"the registry entry {path} could not be read: {error}") from None
    if not isinstance(entry, dict) or entry.get("version") != 1 or not isinstance(entry.get("connector"), str):
        raise ConnectorError(f"{path} is not a version 1 registry entry")
    return Connector.load_state(entry["connector"])


def _load_toml(text: str, path: str) -> Dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]

        parsed: Dict[str, Any] = tomllib.loads(text)
        return parsed
    except ImportError:
        return _small_toml(text, path)
    except ValueError as error:
        raise ConnectorError(f"the services file {path} is not valid TOML: {error}") from None


def _small_toml(text: str, path: str) -> Dict[str, Any]:
    """The subset of TOML a services file uses (Python < 3.11 has no
    tomllib): ``[a.b]`` tables and ``key = "string" | true | false``."""
    root: Dict[str, Any] = {}
    table = root
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        header = re.match(r"\[\s*([^\]]+?)\s*\]\s*(#.*)?$", line)
        if header:
            table = root
            for part in header.group(1).split("."):
                table = table.setdefault(part.strip().strip('"'), {})
            continue
        pair = re.match(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|true|false)\s*(#.*)?$', line)
        if not pair:
            raise ConnectorError(f"the services file {path}, line {number}: not understood: {line!r}")
        value = pair.group(2)
        table[pair.group(1)] = json.loads(value) if value.startswith('"') else value == "true"
    return root


def lookup_services(name: str, path: str) -> Optional[Connector]:
    """The connector the services file at ``path`` lists under ``name``."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as error:
        raise ConnectorError(f"the services file {path} could not be read: {error}") from None
    services = _load_toml(text, path).get("services", {})
    spec = services.get(name) if isinstance(services, dict) else None
    if not isinstance(spec, dict):
        return None

    def fail(reason: str) -> ConnectorError:
        return ConnectorError(f"the services file {path}: service {name!r}: {reason}")

    base = os.path.dirname(os.path.abspath(path))
    addresses = [key for key in ("socket", "pipe", "tcp") if key in spec]
    if len(addresses) != 1:
        raise fail('give exactly one of socket = "PATH", pipe = "NAME", tcp = "HOST:PORT"')
    kind = addresses[0]
    if kind == "socket":
        connector = Connector("unix", os.path.join(base, spec["socket"]))
    elif kind == "pipe":
        connector = Connector("pipe", spec["pipe"])
    else:
        host, _, port = str(spec["tcp"]).rpartition(":")
        connector = Connector.tcp(host.strip("[]"), int(port)).with_secret(None)
    secret: Optional[bytes] = None
    if "secret_file" in spec:
        secret_path = os.path.join(base, spec["secret_file"])
        try:
            with open(secret_path, encoding="utf-8") as file:
                secret_text = file.read()
        except OSError:
            raise fail(f"its secret_file {secret_path} could not be read") from None
        where = f"secret_file {secret_path}"
    elif "secret_env" in spec:
        secret_text = os.environ.get(spec["secret_env"], "")
        if not secret_text:
            raise fail(f"secret_env: the environment variable {spec['secret_env']} is not set")
        where = f"secret_env {spec['secret_env']}"
    elif spec.get("no_secret") is True:
        secret_text, where = "", ""
    else:
        raise fail('give exactly one of secret_file = "PATH", secret_env = "VAR", no_secret = true')
    if where:
        try:
            secret = b64decode(secret_text.strip().rstrip("="))
        except ValueError:
            raise fail(f"the secret in {where} is not base64url text") from None
    connector = connector.with_secret(secret)
    return connector.with_format(spec.get("format"))


def resolve(name: str) -> Connector:
    """``@NAME``: the services file (``SWITCHBOARD_SERVICES``), then the
    registry. Raises :class:`ConnectorError` saying where it looked."""
    check_name(name)
    looked: List[str] = []
    services = os.environ.get(SERVICES_ENV_VAR)
    if services:
        found = lookup_services(name, services)
        if found is not None:
            return found
        looked.append(f"the services file {services}")
    directory = registry_dir()
    found = lookup_registry(name, directory)
    if found is not None:
        return found
    looked.append(f"the registry {directory}")
    raise ConnectorError(f"no service named {name!r} in {' and '.join(looked)}; is it running?")


def _answering(connector: Connector, pid: int) -> bool:
    """Whether a registered server still lives: its process exists and its
    address accepts a connection."""
    import socket

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # another user's process: alive
    try:
        if connector.kind == "unix":
            probe = socket.socket(socket.AF_UNIX)
            probe.settimeout(1)
            probe.connect(connector.address)
        elif connector.kind == "tcp":
            probe = socket.create_connection(connector.host_port(), timeout=1)
        else:
            return True
        probe.close()
        return True
    except OSError:
        return False


class Registration:
    """A name this process published; :meth:`remove` takes it back (only
    if the entry is still this one)."""

    def __init__(self, path: str, ours: bytes) -> None:
        self.path = path
        self._ours = ours

    def remove(self) -> None:
        try:
            with open(self.path, "rb") as file:
                if file.read() != self._ours:
                    return
            os.unlink(self.path)
        except OSError:
            pass


def publish(name: str, connector: Connector) -> Registration:
    """Registers ``connector`` under ``name`` in this user's registry, as
    Rust's ``Server::bind_named`` does: written privately under a temporary
    name, then hard-linked into place, so readers never see half an entry.
    A stale entry (its server is gone) is replaced; a live one is an error."""
    import time

    check_name(name)
    directory = registry_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    _check_private(directory)
    entry = {"version": 1, "name": name, "pid": os.getpid(), "kind": connector.kind,
             "connector": connector.dump_state(), "registered": int(time.time())}
    ours = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
    path = os.path.join(directory, f"{name}.json")
    temp = os.path.join(directory, f".{name}.{os.urandom(8).hex()}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(ours)
        for _ in range(5):
            try:
                os.link(temp, path)
                return Registration(path, ours)
            except FileExistsError:
                pass
            try:
                with open(path, "rb") as file:
                    existing = file.read()
                old = json.loads(existing)
                if _answering(Connector.load_state(old["connector"]), int(old["pid"])):
                    raise ConnectorError(f"the name {name!r} is taken by a live server (pid {old['pid']})")
            except FileNotFoundError:
                continue
            except (ValueError, KeyError, TypeError, ConnectorError) as error:
                if "is taken" in str(error):
                    raise
            try:
                os.unlink(path)  # a stale or unreadable entry
            except FileNotFoundError:
                pass
        raise ConnectorError(f"the name {name!r} could not be registered in {directory}")
    finally:
        try:
            os.unlink(temp)
        except OSError:
            pass
