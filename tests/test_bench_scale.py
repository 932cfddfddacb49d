"""bench/scale.py judges its memory targets: pass, FAIL or n/a per target; a failed stage fails."""
from bench.scale import STAGES, verdicts


def rows(size: int, **peaks) -> list[dict]:
    """One row per stage at ``size`` pairs, 500 MB unless ``peaks`` says otherwise."""
    return [{"size": size, "stage": stage, "seconds": 1.0, "peak_rss_mb": peaks.get(stage, 500), "info": {}}
            for stage in STAGES]


def test_every_target_met_passes():
    judged = verdicts(rows(100_000) + rows(1_000_000, train=4096, evaluate=8192))
    assert [status for status, _ in judged] == ["pass", "pass"]
    assert "largest 4,096 MB (train at 1,000,000 pairs)" in judged[1][1]


def test_train_above_4_gb_at_1m_fails_and_the_limit_holds_only_up_to_1m():
    assert [status for status, _ in verdicts(rows(1_000_000, train=4097))] == ["pass", "FAIL"]
    assert [status for status, _ in verdicts(rows(3_000_000, train=6000))] == ["pass", "n/a"]


def test_any_stage_above_8_gb_fails():
    judged = verdicts(rows(100_000, filter=8193))
    assert [status for status, _ in judged] == ["FAIL", "pass"]
    assert "filter at 100,000 pairs" in judged[0][1]


def test_a_failed_stage_fails_the_run():
    run = rows(1_000_000)
    run[2]["info"] = {"failed": "exit -9"}  # train killed: nothing left to judge the train target on
    judged = verdicts(run)
    assert [status for status, _ in judged] == ["pass", "n/a", "FAIL"]
    assert judged[1][1].endswith("no finished run it applies to") and judged[2][1] == "train at 1,000,000 pairs failed: exit -9"
