"""Calibration data: INT8 calibration pairs and per-subject spotting noise floors."""
