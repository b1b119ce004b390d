"""Preprocessing: the aligned-crop cache shared by training, evaluation and calibration."""

from trainer.preprocess.cache import CacheOptions, CacheReport, build_cache, cache_path, load_crops

__all__ = ["CacheOptions", "CacheReport", "build_cache", "cache_path", "load_crops"]
