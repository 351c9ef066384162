"""Tiny models run fastest on one torch thread (two spin-wait on a shared CPU), and stay fast when the machine
is oversubscribed: every model test module runs on one."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
