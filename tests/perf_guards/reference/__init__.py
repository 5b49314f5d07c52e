"""A frozen copy of the pandas mapping as it was before the Arrow rewrite (issue 6).

Kept only as a test oracle (with one later rule change mirrored: the reader's rank decides
duplicates on its own): the rewritten hot path must render byte-identical records for any
input, and the fuzz tests next to it compare the two on generated frames. Never import it from
``plugins/``.
"""
