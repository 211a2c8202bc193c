"""Memory sizing for the HNSW indexes (vector_load.memory_settings) and where the embedded server
keeps its memory defaults (so that the loader's ALTER SYSTEM is not overridden)."""

from __future__ import annotations

import pytest

from recsys.core.config import load_settings
from recsys.core.errors import ConfigError
from recsys.local import pgembedded
from recsys.pipeline.vector_load import MB, MemorySettings, estimated_index_bytes, memory_settings

GB = 1024 * MB


def test_small_indexes_keep_the_floors():
    assert memory_settings(12 * MB, 11 * MB, 24 * GB) == MemorySettings(256, 4096, 128)


def test_a_million_item_index_is_sized_from_its_size():
    """~0.6 GB of HNSW (1M x 64-d, m 16): shared_buffers holds it with a quarter to spare, the build
    gets twice the largest index, effective_cache_size stays at PostgreSQL's 4 GB default."""
    memory = memory_settings(600 * MB, 570 * MB, 24 * GB)
    assert memory.shared_buffers == 896  # 600 * 1.25 + 128 = 878 -> next 64 MB step
    assert memory.shared_buffers * MB >= 600 * MB * 1.25
    assert memory.maintenance_work_mem == 1216  # 2 * 570 + 64 = 1204 -> 1216
    assert memory.effective_cache_size == 4096
    assert memory.server_settings() == {
        "shared_buffers": "896MB",
        "effective_cache_size": "4096MB",
        "maintenance_work_mem": "1216MB",
    }


def test_large_indexes_grow_effective_cache_size_and_are_capped_by_ram():
    memory = memory_settings(4 * GB, 3 * GB, 8 * GB)
    assert memory.shared_buffers == int(8 * GB * 0.40) // MB  # 40% of RAM, not the 5.1 GB the index asks
    assert memory.effective_cache_size == 6 * 1024  # 75% of RAM
    assert memory.maintenance_work_mem == 2 * 1024  # 25% of RAM
    roomy = memory_settings(2 * GB, 2 * GB, 64 * GB)
    assert roomy.effective_cache_size == 2688 + 4096  # shared_buffers + twice the indexes


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="index sizes"):
        memory_settings(-1, 0, GB)
    with pytest.raises(ValueError, match="RAM"):
        memory_settings(MB, MB, 0)


def test_index_size_estimate_matches_the_measured_ones():
    """pg_relation_size of the benchmark's item indexes (m 16, 64-d): 54 MB at 100k, 541 MB at 1M."""
    assert estimated_index_bytes(100_000, 64) == pytest.approx(54 * MB, rel=0.10)
    assert estimated_index_bytes(1_000_000, 64) == pytest.approx(541 * MB, rel=0.10)
    assert estimated_index_bytes(1000, 64, m=32) > estimated_index_bytes(1000, 64, m=16)


def test_memory_defaults_are_in_an_included_file_not_on_the_command_line(tmp_path):
    """Command-line options override ALTER SYSTEM; the memory defaults must not be among them."""
    assert not set(pgembedded.MEMORY_DEFAULTS) & set(pgembedded.SERVER_OPTIONS)
    conf = tmp_path / "postgresql.conf"
    conf.write_text("max_connections = 100\n")
    pgembedded.write_defaults(tmp_path)
    pgembedded.write_defaults(tmp_path)  # every start: rewritten, included once
    assert conf.read_text().count("include_if_exists = 'recsys.conf'") == 1
    assert "shared_buffers = '256MB'" in (tmp_path / "recsys.conf").read_text()


def test_memory_is_applied_by_configuration_which_the_embedded_stack_sets():
    """Nothing branches on the host: RECSYS_PG_MEMORY decides, reporting unless the stack says apply."""
    assert (load_settings({}).pg_memory, load_settings({}).pg_server_ram_mb) == ("report", 0)
    env = pgembedded.memory_env()
    assert env["RECSYS_PG_MEMORY"] == "apply"
    assert int(env["RECSYS_PG_SERVER_RAM_MB"]) * MB == pytest.approx(pgembedded.host_ram_bytes(), abs=MB)
    assert load_settings(env).pg_memory == "apply"
    with pytest.raises(
        ConfigError,
        match=r"^invalid setting RECSYS_PG_MEMORY='always': "
        r"expected one of apply, report$",
    ):
        load_settings({"RECSYS_PG_MEMORY": "always"})
