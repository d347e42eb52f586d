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

# Elements of one [b, block, d, n] decay buffer of the CUDA path's initial-state correction
# (`model.scan.add_initial_state` on a GPU): 8 MB in float32, the size of a score tile, which the
# CUDA attention (SDPA) does not allocate. CPU-sized blocks would cost a thousand kernel launches
# per layer and 2048-token chunk at LongLLaVA-9B's widths (d 8192, n 16: 2 tokens a block).
CUDA_CORRECTION_BLOCK_ELEMENTS = 1 << 21
