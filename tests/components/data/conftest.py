"""User paths must resolve inside the project (the working directory): each test runs in its own tmp_path."""

import pytest


@pytest.fixture(autouse=True)
def _in_tmp_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
