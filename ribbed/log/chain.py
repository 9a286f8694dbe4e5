"""The digest chain of a log: how each record's digest follows from the previous record's.

A plain chain is SHA-256(previous ‖ body); a keyed chain (a scenario's ``log.key_file``) is
HMAC-SHA256 under the run's key of the same bytes.  The chain has the same shape either way
(the first record is chained to :data:`DIGEST_SEED`), so the writer, the writer process and the
reader differ only in the hash they start from: :meth:`DigestChain.start`.  A plain chain
detects changes; only a keyed one tells who can have made them (docs/log-format.md, "Keyed
chain").
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ribbed.log.keys import LogKey

__all__ = ["DIGEST_SEED", "KEYED", "PLAIN", "DigestChain"]

#: What the first record's digest is chained to.
DIGEST_SEED = b"ribbed-log\x00"
#: The header's ``chain.kind`` of a keyed log.
KEYED = "hmac-sha256"


class DigestChain:
    """SHA-256 chaining, or HMAC-SHA256 chaining under ``key`` (a :class:`~ribbed.log.keys.LogKey`)."""

    def __init__(self, key: LogKey | None = None):
        self.key = key
        # (an HMAC keyed once and copied per record: the key's pads are hashed once, not per record)
        self._keyed = None if key is None else hmac.new(key.secret, digestmod=hashlib.sha256)

    @property
    def keyed(self) -> bool:
        return self._keyed is not None

    def start(self, previous: bytes) -> Any:
        """A hash object already fed the previous record's digest: ``update`` it with the body's
        bytes (in pieces if need be), then ``digest()`` is the record's digest."""
        if self._keyed is None:
            return hashlib.sha256(previous)
        chained = self._keyed.copy()
        chained.update(previous)
        return chained

    def digest(self, previous: bytes, body: bytes) -> bytes:
        """The digest of a record with this body whose predecessor's digest is ``previous``."""
        chained = self.start(previous)
        chained.update(body)
        return chained.digest()

    def header_field(self) -> dict | None:
        """What a log's header says about its chain: ``{"kind": "hmac-sha256", "key_id": ...}``
        for a keyed chain (never the key), None for a plain one (the header has no ``chain``)."""
        return None if self.key is None else {"kind": KEYED, "key_id": self.key.key_id}


#: The chain of a log without a key.
PLAIN = DigestChain()
