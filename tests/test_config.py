"""Run-configuration parsing."""


def test_set_reads_exponent_without_dot_as_number():
    from mcit_bench.config import parse_set

    assert parse_set(["lr=5e-3", "name=abc", "r=8"]) == {"lr": 5e-3, "name": "abc", "r": 8}
