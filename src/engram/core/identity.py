"""Pseudonymous user ids: what is written to disk is a keyed hash of the caller's user id, never the id."""

from __future__ import annotations

import hashlib
import hmac
from typing import NewType

#: A user as the stores know them: the pseudonym of a caller's user id. Only this module makes one, so a port that
#: takes a UserKey cannot be handed a raw id by mistake.
UserKey = NewType("UserKey", str)

#: Prefix that marks a stored user key as a pseudonym (and keeps it a valid, readable identifier).
PREFIX = "u-"


class Pseudonymizer:
    """Maps user ids to stable pseudonyms with HMAC-SHA-256 under a secret key.

    Without the key, a pseudonym cannot be linked back to the id, nor computed from a guessed id, so the data
    directory alone does not reveal who the memories belong to.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonym key must be at least 16 bytes")
        self._key = key

    def __call__(self, user_id: str) -> UserKey:
        """The pseudonym stored in place of `user_id`."""
        return UserKey(PREFIX + hmac.new(self._key, user_id.encode(), hashlib.sha256).hexdigest()[:40])


def unkeyed(user_id: str) -> UserKey:
    """The id itself as the key: for stores used without pseudonyms (tests, tools that open a store directly)."""
    return UserKey(user_id)


#: The owner of global knowledge (ingested for every user): a key no pseudonym or user id can equal.
GLOBAL_OWNER = UserKey("*")
