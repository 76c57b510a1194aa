"""The stable id of a preference pair, by which annotation files (strength, gold labels) are joined to the data."""

import hashlib


def pair_id(prompt: str, chosen: str, rejected: str) -> str:
    """sha1 of prompt, chosen, rejected joined by \\x1f, hex, first 16 chars."""
    # \x1f (unit separator) cannot be confused with text, so ("ab", "c") and ("a", "bc") get different ids.
    return hashlib.sha1("\x1f".join((prompt, chosen, rejected)).encode("utf-8")).hexdigest()[:16]
