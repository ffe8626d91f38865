"""``python -m search.cli``: the ``poolstride`` command."""

from __future__ import annotations

from search.cli import main

if __name__ == "__main__":
    main()
