"""bench/report.py: a new ``make bench`` report keeps the hand-written sections of the old one."""

from __future__ import annotations

from bench.report import HAND_END, HAND_START, keep_hand_written


def test_a_new_report_keeps_every_hand_written_section_of_the_old_one_and_nothing_else():
    old = (
        "# Benchmarks\n\nold generated figures\n\n"
        f"{HAND_START}\n### Before and after\n| a | b |\n{HAND_END}\n\nold tail\n"
        f"{HAND_START}\n### Several instances\n10,000 tasks\n{HAND_END}\n"
    )
    new = keep_hand_written(old, "# Benchmarks\n\nnew generated figures\n")
    assert new.startswith("# Benchmarks\n\nnew generated figures\n\n")
    assert "old generated figures" not in new and "old tail" not in new
    assert new.count(HAND_START) == new.count(HAND_END) == 2
    assert new.index("### Before and after") < new.index("### Several instances")
    assert keep_hand_written(new, "# Benchmarks\n\nthird run\n").count(HAND_START) == 2  # not duplicated


def test_without_hand_written_sections_the_new_report_is_written_as_rendered():
    assert keep_hand_written("# old\n", "# new\n") == "# new\n"
    assert keep_hand_written("", "# new\n") == "# new\n"
