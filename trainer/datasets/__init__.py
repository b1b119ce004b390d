"""Dataset loaders: each returns `Sample`s (subject, clip, onset/apex/offset frame numbers,
label, frame paths, fps, kind). Annotation defects are repaired by documented rules, logged
to the `mfvan.datasets` logger, and listed in the `LoadReport` each loader fills.

    load_casme2(root)   CASME II (also reads the synthetic corpus); load_synth(root)
    load_samm(root)     SAMM
    load_smic(root)     SMIC-HS (no apex: middle frame)
    load_megc2019(smic_root, casme2_root, samm_root)   3-class composite
"""

from trainer.datasets.casme2 import LoadReport, casme2_five_class, load_casme2, load_synth
from trainer.datasets.megc2019 import CompositeReport, load_megc2019
from trainer.datasets.samm import load_samm
from trainer.datasets.sample import Sample, frame_number, list_frames
from trainer.datasets.smic import load_smic

LOADERS = {"casme2": load_casme2, "samm": load_samm, "smic": load_smic, "synth": load_synth}

__all__ = ["LOADERS", "CompositeReport", "LoadReport", "Sample", "casme2_five_class", "frame_number",
           "list_frames", "load_casme2", "load_megc2019", "load_samm", "load_smic", "load_synth"]
