"""The versions this process's own upkeep commits: known to keep every row without reading the transaction log.

Reading the log of a commit takes the second Lance engine (pylance), which stays loaded once imported (~46 MB of
resident code and a runtime with threads of its own). Another process's commits still need it; this process's own
compactions do not: while it holds the upkeep lock, other processes can only append (erasure and replacement take
that lock too), and an append shows in the table's row count, which LanceDB's own version list reports.
"""

from __future__ import annotations

from typing import Any


def rows_at(table: Any, version: int) -> int | None:
    """The live rows of `table` at `version`, from LanceDB's version list (None if it no longer lists it)."""
    for entry in table.list_versions():
        if int(entry["version"]) == version:
            try:
                return int(entry["metadata"]["total_rows"])
            except (KeyError, TypeError, ValueError):
                return None
    return None


class UpkeepWindow:
    """One run of this process's upkeep: the table version it started at and the rows this process added since.

    The caller guards it with the lock under which it commits its own inserts.
    """

    def __init__(self, table: Any) -> None:
        self.start = int(table.version)
        self.rows_before = rows_at(table, self.start)
        self._added: dict[int, int] = {}

    def added(self, version: int, rows: int) -> None:
        """This process committed `rows` new rows at `version` during the run."""
        self._added[version] = rows

    def unchanged_through(self, table: Any, end: int) -> bool:
        """Whether every commit after the start up to `end` that this process did not add left the rows as they were:
        the row count at `end` is the start's plus this process's own additions (another process's append shows)."""
        if self.rows_before is None or end < self.start:
            return False
        mine = sum(rows for version, rows in self._added.items() if version <= end)
        return rows_at(table, end) == self.rows_before + mine
