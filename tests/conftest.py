"""Shared test settings.

The test tensors are small: one intra-op thread per process is fastest (with ``-n 2`` on two
cores, more threads only contend).
"""

import torch

torch.set_num_threads(1)
