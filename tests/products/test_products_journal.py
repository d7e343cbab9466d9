"""The run's journal as its row store: rows read back by product id after a reopen, a line cut off by a crash
skipped (and the rows after it still found), a product journaled twice read as its last row."""

from __future__ import annotations

from pathlib import Path

from contentmill.products.journal import FinishedCount, RunJournal


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
    finished = FinishedCount(path)
    assert finished() == 5  # complete lines, as a progress bar reads them from outside
    journal.append([{"id": "d", "description": "fourth"}])
    assert finished() == 6  # what was appended since, read from where the last look stopped
    journal.remove()
    assert finished() == 6  # the finished run removed it: the count last seen stays
    assert FinishedCount(path)() == 0 and not RunJournal(path)
    path.write_bytes(b'{"id": "e"}\n')
    assert finished() == 1  # a journal written anew, shorter than what was read, is counted from its start
