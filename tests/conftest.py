"""Shared fixtures. Tests use the real bundled models and the real data in ../shared/data
(skipped with a reason when it is absent); nothing here is mocked."""
from __future__ import annotations

import os
import socket

import pytest

from harness.models import set_offline_defaults
from harness.paths import SHARED_DATA

set_offline_defaults()


@pytest.fixture(scope="session")
def shared_data():
    """The raw public data folder; skips when this machine does not have it."""
    if not (SHARED_DATA / "amazon_in" / "amazon.csv").exists():
        pytest.skip(f"raw data not found at {SHARED_DATA} (set HARNESS_RAW_DIR)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def prepared_dir(shared_data, tmp_path_factory):
    """product_review prepared from the real raw data, once per test session."""
    from harness.data.prepare import prepare

    out = tmp_path_factory.mktemp("prepared")
    prepare(shared_data, out, ["product_review"])
    return out


class NetworkCalled(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test on any attempt to open a non-local socket connection."""
    real_connect = socket.socket.connect
    attempts = []

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1")
                                      or host.startswith("/")):
            return real_connect(self, address)
        attempts.append(address)
        raise NetworkCalled(f"network call to {address}")

    def guarded_create_connection(address, *a, **k):
        attempts.append(address)
        raise NetworkCalled(f"network call to {address}")

    real_getaddrinfo = socket.getaddrinfo

    def guarded_getaddrinfo(host, *a, **k):   # a name lookup is the first step of any call
        if host in (None, "localhost", "::1") or str(host).startswith("127."):
            return real_getaddrinfo(host, *a, **k)
        attempts.append(host)
        raise NetworkCalled(f"name lookup of {host}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "create_connection", guarded_create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return attempts
