"""Trials: one measured short run of a candidate config.

- ``protocol``: the spec the tuner writes and the report the script writes back;
- ``core``: the trial core (meter set-up, failure classification, memory figures);
- ``workload``: the caller's model, optimizer, data and loss, checked, for in-process trials;
- ``in_process``: ``advise()``'s trials, on copies of the caller's objects;
- ``script``: ``autoaccel tune``'s trials, one subprocess (or torchrun) each;
- ``session``: the script side of a trial, inside ``prepare()``.
"""
