"""The core: profiles, targets interface, trials, load generator, statistics, session store.

Nothing here imports textual or rich (a test checks it): the TUI and the headless printer are front ends.
"""
