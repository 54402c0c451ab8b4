from __future__ import annotations

import autoaccel


def test_public_names_are_pinned() -> None:
    assert sorted(autoaccel.__all__) == sorted(
        [
            "Advice",
            "AutoaccelError",
            "ConfigError",
            "DataError",
            "HardwareProfile",
            "Run",
            "TrainingConfig",
            "TrialError",
            "UsageError",
            "__version__",
            "advise",
            "in_trial",
            "load_config",
            "prepare",
            "probe_system",
            "save_config",
        ]
    )
    for name in autoaccel.__all__:
        assert hasattr(autoaccel, name), name
