"""Fixtures shared by the study tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Tiny tensors on a shared machine: a second intra-op thread only adds synchronisation
    (autodiffusion's tests took 70 s with two threads against 4 s with one), and the harness
    runs studies with one thread too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
