"""Baselines run on the same LOSO folds as MFVAN: LBP-TOP + linear SVM, OFF-ApexNet-style CNN.

Each baseline is `fit(train: PairSet, seed) -> predictor`, `predictor(test: PairSet) -> [N]`.
"""
