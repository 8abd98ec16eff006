"""Every fixed limit on a caller's value, in one place: the tool schemas publish them and the core's types carry them.

Settings may lower some of them for one server (`ENGRAM_MAX_CONTENT_CHARS`); none may be raised past these.
"""

from __future__ import annotations

#: Accepted shape of every caller-supplied identifier (user, session, agent). Parsing ids at the
#: boundary is the first defence for storage filters; storage quotes literals as the second.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+:-]{0,127}$"
ID_RULE = "1-128 characters: letters, digits and _ . @ + : - (starting with a letter or digit)"
#: Shape of a memory id (content-addressed, see `validation.memory_id`).
MEMORY_ID_PATTERN = r"^[0-9a-f]{32}$"

MAX_QUERY_CHARS = 2000
#: The longest content any server accepts; a server's own limit (a setting) may be lower.
MAX_CONTENT_CHARS = 100_000
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_LABEL_CHARS = 64
MAX_METADATA_KEYS = 32
MAX_METADATA_VALUE_CHARS = 1000
#: Agents named in one include or exclude list of a filter.
MAX_FILTER_AGENTS = 20
#: Older memories one memory may supersede.
MAX_SUPERSEDES = 20
#: `list_memories` pages: at most this many memories per page, and pages reach this far.
MAX_PAGE = 100
MAX_OFFSET = 10_000
MAX_TOP_K = 50
MAX_BATCH = 500
#: Dates storage can hold (naive ones are taken as UTC).
FIRST_YEAR, LAST_YEAR = 1000, 9998
