"""Harnesses: what measures or shows the product, never part of it.

`bench` (`mfvan-bench streamer|e2e`), `soak` (`mfvan-bench soak`), `demo` (`make demo`) and
`clip` (the short synthetic test clip they and the tests replay). They ship in the wheel so a
user can run them on a base install; product code never imports them (an import contract in
CI keeps it so), so a harness can change without touching what the daemon does.
"""
