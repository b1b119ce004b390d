"""Face detection, landmarks and alignment, shared by the streamer and the trainer's cache."""
