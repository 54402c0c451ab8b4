"""What is masked (issue 36, 4 and 8): every credential in a URL, the values of
credential-named options only, as whole tokens."""

from __future__ import annotations

import pytest

from autoaccel.redact import mask_args, mask_url, scrub, secret_values


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pa/ss@db:5432/s", "postgresql://u:***@db:5432/s"),
        ("postgresql://u:pa ss@db/s", "postgresql://u:***@db/s"),
        (
            "postgresql://u@db/s?password=pw&sslmode=require",
            "postgresql://u@db/s?password=***&sslmode=require",
        ),
        (
            "postgresql+psycopg://u@db/s?sslmode=require",
            "postgresql+psycopg://u@db/s?sslmode=require",
        ),
        ("sqlite:////tmp/a b/studies.db", "sqlite:////tmp/a b/studies.db"),
    ],
)
def test_every_credential_in_a_url_is_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_only_credential_named_options_are_masked() -> None:
    args = ["--max-tokens", "2", "--use-auth-cache", "--epochs", "3", "--hf-token", "t0k"]
    assert mask_args(args) == [
        "--max-tokens", "2", "--use-auth-cache", "--epochs", "3", "--hf-token", "***",
    ]  # fmt: skip
    assert secret_values(args) == ["t0k"]


def test_secrets_are_masked_as_whole_tokens() -> None:
    assert scrub("step 2 of 20: token t0k rejected; t0kens left", ["t0k"]) == (
        "step 2 of 20: token *** rejected; t0kens left"
    )
    assert "pa/ss" in secret_values(["postgresql://u:pa/ss@db/s"])
