"""MFVAN network, dataset loaders, synthetic corpus, training and LOSO evaluation.

Sub-modules import torch lazily where they can, so light tools (media fetcher, loaders) run
without the `[train]` extra.
"""
