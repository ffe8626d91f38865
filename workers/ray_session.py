"""Ray's lifecycle for a worker: start a private Ray (or join one), the reaper beside it, and the
environment variables Ray and Tune read.

Importing this module (or any of poolstride's) sets no environment variable. Each one is set
for the block that needs it, just before Ray or Tune reads it, with ``setdefault`` so that a
user's own setting wins, and put back as it was afterwards:

- :func:`ray_session`, before ``ray.init``: ``RAY_USAGE_STATS_ENABLED=0`` (``ray.init`` and the
  processes it starts read it: no usage prompt, no report), ``RAY_AUTH_MODE=disabled`` for a
  private instance (it listens on this machine only; no token is written to ``~/.ray``), and
  ``RAY_TMPDIR``, a private folder (always set: it is also the mark the reaper kills by).
- :func:`tune_settings`, around building and fitting a ``Tuner`` (``tune.run`` reads them):
  ``TUNE_DISABLE_SIGINT_HANDLER=1`` (the worker's own SIGINT handler hands the job back; Tune's
  would replace it mid-run), ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`` (results live in the
  database; Tune's CSV/JSON/TensorBoard files cost time per trial) and ``RAY_AIR_NEW_OUTPUT=0``
  (the legacy reporter, silent at ``verbose=0``).

A joined cluster's auth setting is the user's to give (``RAY_AUTH_MODE`` and ``RAY_AUTH_TOKEN``,
as on its nodes): nothing is set for it. Its address is checked first (:func:`check_address`).

``RAY_DEDUP_LOGS`` is left alone: Ray reads it once, when ``ray`` is imported, and with
``log_to_driver=False`` the only lines it could fold are Ray's own error notices.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import ray

__all__ = ["RayUnavailableError", "check_address", "ray_session", "tune_settings"]

_RAY_INIT_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}
_TUNE_ENV = {
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
}
# Tune's result files are off, so the analysis it builds at the end of a fit complains about
# every trial; nothing is missing
_TUNE_ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"


class RayUnavailableError(ConnectionError):
    """No Ray cluster answers at the address a worker was told to join."""


def check_address(address: str, *, timeout_s: float = 10.0) -> None:
    """Raise :class:`RayUnavailableError` (one line) unless the head's GCS at ``address``
    (``host:port``) accepts a connection within ``timeout_s``.

    ``ray.init`` itself retries an address nobody answers at for over ten minutes (20 tries
    of about 35 s, measured with Ray 2.60), silently.

    Example:
        >>> check_address("127.0.0.1:1", timeout_s=1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        workers.ray_session.RayUnavailableError: no Ray cluster answers at 127.0.0.1:1: ...
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailableError(f"Ray address {address!r} is not HOST:PORT (the head's GCS)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise RayUnavailableError(
            f"no Ray cluster answers at {address}: {exc.strerror or exc}"
        ) from None


@contextlib.contextmanager
def ray_session(
    *, address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None
) -> Iterator[None]:
    """Use the running Ray instance, or start one for the block: private (own temp folder) on
    this machine, or joined at ``address``.

    Joining an address nobody answers at raises :class:`RayUnavailableError` at once. A reaper
    process watches this one: if it dies without shutting Ray down (``kill -9``), the
    reaper kills what Ray left running (:mod:`workers._reaper`).

    Example:
        >>> with ray_session(num_cpus=1):  # doctest: +SKIP
        ...     ray.cluster_resources()["CPU"]
        1.0
    """
    if ray.is_initialized():
        yield
        return
    if address:
        check_address(address)
    temp_dir = tempfile.mkdtemp(prefix="ps-ray-", dir="/tmp")  # short: socket paths are capped
    defaults = dict(_RAY_INIT_ENV) if address else {**_RAY_INIT_ENV, "RAY_AUTH_MODE": "disabled"}
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    with _environment(defaults, always={"RAY_TMPDIR": temp_dir}):
        reaper = subprocess.Popen(
            [sys.executable, "-m", "workers._reaper", temp_dir],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=num_cpus, num_gpus=num_gpus, _temp_dir=temp_dir, **kwargs)
            yield
        finally:
            ray.shutdown()
            reaper.terminate()
            reaper.wait()
            shutil.rmtree(temp_dir, ignore_errors=True)


@contextlib.contextmanager
def tune_settings() -> Iterator[None]:
    """The environment and log level a ``Tuner`` is built and fitted in (see the module).

    Example:
        >>> with tune_settings():
        ...     os.environ["TUNE_DISABLE_SIGINT_HANDLER"]
        '1'
    """
    logger = logging.getLogger(_TUNE_ANALYSIS_LOGGER)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with _environment(_TUNE_ENV):
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _environment(
    defaults: Mapping[str, str], *, always: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Set ``defaults`` where unset and ``always`` regardless, for the block only."""
    always = always or {}
    saved = {key: os.environ.get(key) for key in (*defaults, *always)}
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    os.environ.update(always)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
