"""The ``poolstride`` command: the composition root, the only place that wires ``workers`` in.

Conventions every command follows: ``--json`` prints one JSON document on stdout; progress and
logs go to stderr; bad input prints one line ``poolstride: error: …`` on stderr, writes nothing
and exits with status 2; a failing database (or download) does the same with status 1. On a
terminal, tables and progress are drawn with rich; elsewhere they are plain lines.

One module per command group (``_space``, ``_db``, ``_queue``, ``_work``, ``_data``, ``_query``,
``_dashboard``), what they share in ``_common`` and ``_flags``, the group in ``_root``. Commands
that need torch or ray import ``workers`` inside their bodies, so importing this package loads
neither.

Example:
    >>> from search.cli import main
    >>> main(["space", "--stages", "1", "--kernel", "3", "--skip", "none"])
    input 1x28x28, 1 stages
      s1: downsample=max|avg|strided|conv  kernel=3  skip=none  width=32  depth=1
    4 distinct architectures
"""

from __future__ import annotations

from search.cli._dashboard import APP_MODULE, app_path, streamlit_command
from search.cli._root import cli, main

__all__ = ["APP_MODULE", "app_path", "cli", "main", "streamlit_command"]
