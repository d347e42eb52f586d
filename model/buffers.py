"""Sizes of the fixed working buffers of the CPU attention and the blocked scan, shared by the code
that allocates them (`model/attention.py`, `model/scan.py`) and the memory model that counts them
(`model/memory.py`), which must not import torch."""

from __future__ import annotations

# Elements of one float32 score tile [b, h, q_block, k_tile]: 8 MB; with its mask and the
# product with V it is the attention's whole working memory on CPU.
SCORE_TILE_ELEMENTS = 1 << 21

# Elements of one [block, b, n, d] block buffer: 1 MB in float32, so the block's working set stays
# in L2 (measured fastest among 64K..4M on a 2-core Xeon with AVX-512).
SCAN_BLOCK_ELEMENTS = 1 << 18
