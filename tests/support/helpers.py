"""Helpers shared by the tests (importable: tests/ is on sys.path)."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import threading
from pathlib import Path
from types import ModuleType

import numpy as np


def randomize_weights(model, seed: int = 0) -> None:
    """Non-trivial weights everywhere, BN moving statistics included."""
    rng = np.random.default_rng(seed)
    for var in model.weights:
        shape = tuple(var.shape)
        path = var.path
        if "moving_variance" in path:
            value = rng.uniform(0.5, 1.5, shape)
        elif "moving_mean" in path or "beta" in path or "bias" in path:
            value = rng.normal(0.0, 0.1, shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            value = rng.normal(0.0, np.sqrt(1.0 / fan_in), shape)
        var.assign(value.astype(var.dtype))


def rel_l2(a, b) -> float:
    """Relative L2 error of `a` against the reference `b`."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


class LoopbackServer:
    """Serves one directory on 127.0.0.1 (a stand-in for a weights host) and counts
    the requests."""

    def __init__(self, directory: str) -> None:
        self.requests = 0
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests += 1
                super().do_GET()

        handler = functools.partial(Handler, directory=directory)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def refuse_writes_into(monkeypatch, folder, function: str = "open") -> None:
    """`os.<function>` (`open`, `mkdir`) fails with EACCES for paths directly in `folder`, as
    on a read-only mount: root writes through permission bits, so tests simulate it."""
    real = getattr(os, function)

    def refusing(path, *args, **kwargs):
        if os.path.dirname(os.path.abspath(path)) == str(folder):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, function, refusing)


def timm_parity_recipes(shared_dir: Path) -> tuple[Path, ModuleType]:
    """The folder of the timm parity fixtures and its `make_state.py`, loaded: it rebuilds
    each fixture's state dict (timm's keys and shapes, seeded values) from its spec."""
    folder = shared_dir / "fixtures" / "timm_parity"
    loader = importlib.util.spec_from_file_location("make_state", folder / "make_state.py")
    make_state = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(make_state)
    return folder, make_state
