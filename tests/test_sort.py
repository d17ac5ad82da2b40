"""The README's "Extending" example: worked examples written by hand, not produced by the code under test."""

from selfimprove.tasks import get_task


def test_sort_format():
    task = get_task("sort")
    assert task.check("3120=", "0123") and task.check("90909=", "00999")
    assert not task.check("3120=", "3120") and not task.length_ok(4, "012")
