"""Telling an empty local LanceDB table from its files: a directory listing instead of a LanceDB call.

Recall asks on every call whether the knowledge table, the graph's entities and the passages of long memories hold
anything; most stores hold none of them. LanceDB's row count costs ~0.2 ms of CPU on its own threads, three times
a recall. A table's rows live in the files of its `data` folder, which LanceDB creates with the first file, before
the commit that makes its rows part of the table: a table without that folder has never held a committed row, and
two stats (microseconds) answer for it. A `data` folder, even an empty one (files deleted: damage LanceDB must
report), and every table not on the local disk mean "ask LanceDB".
"""

from __future__ import annotations

import os
from pathlib import Path

from engram.storage.location import Location


def holds_no_rows(directory: Location, table_name: str) -> bool:
    """True when the local table `table_name` under `directory` has never had a data file, hence holds no row;
    False when it may hold rows, or is damaged, or is not local."""
    if not isinstance(directory, Path):
        return False  # object storage: a listing is a request, no cheaper than LanceDB's count
    table = directory / f"{table_name}.lance"
    # A missing table is LanceDB's to report; so is a data folder whose files were deleted.
    return os.path.isdir(table) and not os.path.lexists(table / "data")
