"""The two ways to tune: ``advise()`` in-process (``advise``) and ``autoaccel tune`` /
``autoaccel lr-find`` on a training script (``script``). Both call ``autoaccel.pipeline``;
neither imports the other."""
