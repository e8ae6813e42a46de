"""Root conftest: the real Redis/Postgres fixtures for every test in the repo."""

pytest_plugins = ["relay_devstack.pytest_plugin"]
