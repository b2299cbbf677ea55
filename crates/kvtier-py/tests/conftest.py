"""Shared fixtures: a small kvtier config (tiny tiers, fast tests)."""

import pathlib

import pytest

SMALL = """
salt = "pytest"
[g1]
bytes = "4MiB"
[g2]
bytes = "8MiB"
[g3]
bytes = "64MiB"
[offload]
g1_to_g2 = { mode = "write-back" }
g2_to_g3 = { mode = "write-through" }
disk_io = "mmap"
clean_ahead = 16
"""


@pytest.fixture
def small_config(tmp_path: pathlib.Path) -> str:
    p = tmp_path / "kvtier.toml"
    p.write_text(SMALL)
    return str(p)
