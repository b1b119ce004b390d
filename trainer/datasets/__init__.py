"""Dataset loaders: each returns `Sample`s (subject, clip, onset/apex/offset frame numbers,
label, frame paths, fps, kind). Annotation defects are repaired by documented rules and
logged to the `mfvan.datasets` logger, and listed in the `LoadReport` each loader fills.
"""

from trainer.datasets.casme2 import LoadReport, casme2_five_class, load_casme2, load_synth
from trainer.datasets.sample import Sample, frame_number, list_frames

__all__ = ["LoadReport", "Sample", "casme2_five_class", "frame_number", "list_frames", "load_casme2",
           "load_synth"]
