"""A nemesis of the project's own: real node processes under faults, checked from the outside.

``python -m tests.chaos --seed N --seconds S`` (or ``make chaos SEED=N SECONDS=S``) founds a
consortium, drives writers and readers through ``node.client``, injects faults drawn from the
seed (tests/chaos/faults.py) through real signals, proxies and mounts, and checks the client
log against the exported chain (tests/chaos/checker.py). docs/SIMULATION.md, "Real-process
nemesis", says what it injects and checks, how to replay a failure, and records the runs.

Modules, one concept each: ``proxies`` (per-link TCP proxies), ``cluster`` (the processes and
their disks), ``workload`` (writers, readers, the client log), ``faults`` (the nemesis),
``checker`` (the proofs), ``runner`` (one bounded run, cleaned up whatever happens).
"""
