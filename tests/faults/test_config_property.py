"""The config loader, property-based: any text either loads into a valid config or raises
``ConfigError`` with one line; never another exception, a hang or a file written."""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autoaccel.config import TrainingConfig, load_config
from autoaccel.errors import ConfigError

KEYS = [f.name for f in TrainingConfig.__dataclass_fields__.values()] + ["bogus", "<<"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["32-true", "bf16-mixed", "ddp", "fsdp", "cosine", "linear", ".nan"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def knob_values(name: str) -> st.SearchStrategy[object]:
    """Values for one knob: plausible ones of its kind (the edges included), or anything."""
    meta = TrainingConfig.__dataclass_fields__[name].metadata
    kinds = meta["kind"] if isinstance(meta["kind"], tuple) else (meta["kind"],)
    plausible: list[st.SearchStrategy[object]] = []
    if meta.get("choices"):
        plausible.append(st.sampled_from([*meta["choices"], "fsdp", "BF16"]))
    if bool in kinds:
        plausible.append(st.booleans())
    if int in kinds:
        plausible.append(st.integers(min_value=-2, max_value=2**26))
    if float in kinds:
        plausible.append(st.floats(min_value=-1, max_value=200) | st.floats())
    return st.one_of(*plausible, SCALARS) if plausible else SCALARS


KNOBS = {name: knob_values(name) for name in TrainingConfig().knobs()}
MAPPINGS = st.fixed_dictionaries(
    {},
    optional={
        **KNOBS,
        "schema_version": st.integers(min_value=0, max_value=3),
        "provenance": st.dictionaries(
            st.sampled_from(["measured", "versions", "evidence", "command", "bogus"]),
            VALUES,
            max_size=3,
        ),
        "bogus": VALUES,
    },
)
YAML_BITS = st.sampled_from(
    [
        "&a ",
        "*a",
        "!!python/object:os.system",
        "{",
        "}",
        "[",
        "]",
        ": ",
        "\n",
        "  ",
        "- ",
        "---",
        "? ",
        "%YAML 1.1\n",
        "\t",
        '"',
        "'",
        "#",
        "!!binary",
        "\x00",
        "\ufeff",
        "batch_size: ",
    ]
)
TEXTS = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(YAML_BITS, st.text(max_size=10)), max_size=40).map("".join),
    MAPPINGS.map(lambda m: yaml.safe_dump(m, allow_unicode=True)),
)

FOLDER = Path(tempfile.mkdtemp(prefix="autoaccel-property-"))
atexit.register(shutil.rmtree, FOLDER, ignore_errors=True)  # each test process its own


def loads_or_refuses(text: str) -> None:
    path = FOLDER / "autoaccel.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    started = time.process_time()  # CPU time: a busy machine does not inflate it
    try:
        config = load_config(path)
    except ConfigError as error:
        assert "\n" not in str(error), str(error)
        assert len(str(error)) < 2000
    else:
        assert isinstance(config, TrainingConfig)
        for name, value in config.knobs().items():
            meta = TrainingConfig.__dataclass_fields__[name].metadata
            assert not isinstance(value, float) or math.isfinite(value), (name, value)
            if value is not None and meta.get("maximum") is not None:
                assert value <= meta["maximum"], (name, value)
            assert not isinstance(value, int) or value <= 10**9, (name, value)  # any knob
        assert TrainingConfig.from_dict(config.to_dict()) == config
    assert time.process_time() - started < 2.0
    assert sorted(p.name for p in FOLDER.iterdir()) == ["autoaccel.yaml"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
@example(
    "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n"
)
@example("batch_size: 32\nbatch_size: 64\n")
def test_any_text_loads_or_is_refused_in_one_line(text: str) -> None:
    loads_or_refuses(text)


@settings(max_examples=400, deadline=None)
@given(MAPPINGS)
def test_any_mapping_loads_or_is_refused_in_one_line(mapping: dict[str, object]) -> None:
    loads_or_refuses(yaml.safe_dump(mapping, allow_unicode=True))


#: One knob changed in an otherwise valid config: each hostile value gets its own chance.
ONE_CHANGE = st.sampled_from(sorted(KNOBS)).flatmap(
    lambda name: knob_values(name).map(lambda value: {name: value})
)


@settings(max_examples=400, deadline=None)
@given(ONE_CHANGE)
@example({"lr": float("nan")})
@example({"batch_size": 10**20})
def test_one_hostile_knob_loads_or_is_refused_in_one_line(change: dict[str, object]) -> None:
    loads_or_refuses(yaml.safe_dump(change, allow_unicode=True))
