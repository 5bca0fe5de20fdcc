"""indicators/parts.py: the model's Parquet parts."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from indicators.model import location
from indicators.parts import read_table, write_table


def _ids(n: int) -> pa.Array:
    return pa.array([f"item-{k:07d}-with-a-long-name" for k in range(n)] * 2)


def test_item_ids_past_a_megabyte_stay_dictionary_encoded(tmp_path):
    # 120 000 distinct ids (3.6 MB of text): past the writers' default 1 MB dictionary page,
    # a column falls back to plain strings and is the size of the text again.
    table = pa.table({"item": _ids(120_000)})
    plain = tmp_path / "plain.parquet"
    pq.write_table(table, plain, use_dictionary=False, compression="none")
    ours = tmp_path / "part" / "ours.parquet"
    write_table(table, location(str(ours)), compression="none")
    # the dictionary once (about half the plain text) plus 17-bit codes
    assert ours.stat().st_size < 0.6 * plain.stat().st_size
    assert read_table(location(str(ours))).equals(table)


def test_options_reach_the_writer(tmp_path):
    table = pa.table({"item": _ids(10)})
    where = tmp_path / "a" / "b.parquet"
    write_table(table, location(str(where)), compression="zstd")
    assert pq.ParquetFile(where).metadata.row_group(0).column(0).compression == "ZSTD"
