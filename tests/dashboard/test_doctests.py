"""The examples in the dashboard's helper modules run."""

from __future__ import annotations

import doctest

import pytest

import dashboard._data
import dashboard.figures
import dashboard.network
import dashboard.report
import dashboard.serve
import dashboard.tables


@pytest.mark.parametrize(
    "module",
    [
        dashboard._data,
        dashboard.figures,
        dashboard.network,
        dashboard.report,
        dashboard.serve,
        dashboard.tables,
    ],
)
def test_doctests(module: object) -> None:
    # dashboard/ is not in pytest's doctest paths: collecting it would run the page scripts
    failed, tried = doctest.testmod(module)  # type: ignore[arg-type]
    assert tried and not failed
