"""Per-camera capture, face tracking, alignment and onset/apex spotting."""
