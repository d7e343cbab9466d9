"""The run's journal as its row store: rows read back by product id after a reopen, a line cut off by a crash
skipped (and the rows after it still found), a product journaled twice read as its last row."""

from __future__ import annotations

from pathlib import Path

from contentmill.products.journal import RunJournal, finished_count


def test_rows_are_found_by_id_across_a_crash_cut_line_and_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "run.jsonl"
    journal = RunJournal(path)
    journal.append([{"id": "a", "description": "first"}, {"id": "b", "description": "Zweite, ß"}])
    with path.open("ab") as handle:
        handle.write(b'{"id": "c", "descr')  # the process died while writing this line
    journal = RunJournal(path)
    assert len(journal) == 2 and "c" not in journal
    journal.append([{"id": "c", "description": "third"}, {"id": "a", "description": "again"}])
    for reopened in (journal, RunJournal(path)):
        assert [reopened.row(p) for p in ("a", "b", "c")] == [
            {"id": "a", "description": "again"}, {"id": "b", "description": "Zweite, ß"},
            {"id": "c", "description": "third"}]
        assert reopened.row("d") is None and len(reopened) == 3
    assert finished_count(path) == 5  # complete lines, as a progress bar reads them from outside
    journal.remove()
    assert finished_count(path) == 0 and not RunJournal(path)
