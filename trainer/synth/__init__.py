"""Synthetic micro-expression corpus rendered on real faces (see docs/data.md).

Public API, small on purpose:
- `load_identities(n)` -> list[Identity]: real faces placed in 640x480 frames, 68 landmarks;
- `PlannedEvent(kind, label, onset, apex, offset, amplitude_px)`;
- `render_clip(identity, events, seed, n_frames=None, fps=200, distractors=None)` -> Clip
  (frames list + ground truth), for tests that need a short clip in memory;
- `make_corpus(...)` / `mfvan-synth` for the on-disk CASME II-layout corpus.
"""

from trainer.synth.identities import Identity, load_identities
from trainer.synth.render import Clip, Distractors, PlannedEvent, render_clip

__all__ = ["Clip", "Distractors", "PlannedEvent", "Identity", "load_identities", "render_clip"]
