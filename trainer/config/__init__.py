"""The trainer's schemas: training/LOSO (train), the synthetic corpus (synth), artefact builds (build).

Torch-free, like every schema: `--validate-config` works on any host.
"""
