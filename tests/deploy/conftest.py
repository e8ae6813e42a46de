"""Fixtures for the deployment tests: one render of the chart per ci/ values file.

`render` is session-scoped and parametrized over deploy/helm/relay/ci/*.yaml, so
each values file is rendered once (chart.render_file caches too) and every
chart test runs against every file of the matrix.
"""

from __future__ import annotations

import pytest

from tests.deploy.chart import CI_VALUES_FILES, Render, render_file


@pytest.fixture(scope="session", params=CI_VALUES_FILES)
def render(request: pytest.FixtureRequest) -> Render:
    return render_file(request.param)
