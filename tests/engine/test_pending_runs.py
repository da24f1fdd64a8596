"""The pending-page bookkeeping of the lazy page server and the copy-on-write copier:
runs [address, length, source address] split at intervals of either coordinate."""

from __future__ import annotations

from torpor.engine.cow import CowSpace
from torpor.engine.lazy import Space

P = 4096


def test_cut_by_address_and_by_source() -> None:
    sp = Space(-1, [[10 * P, 4 * P, 100 * P], [20 * P, 2 * P, 200 * P]])
    inside, outside = sp.cut(11 * P, 21 * P)
    assert inside == [[11 * P, 3 * P, 101 * P], [20 * P, P, 200 * P]]
    assert outside == [[10 * P, P, 100 * P], [21 * P, P, 201 * P]]
    inside, outside = sp.cut(102 * P, 201 * P, by_source=True)
    assert inside == [[12 * P, 2 * P, 102 * P], [20 * P, P, 200 * P]]
    assert outside == [[10 * P, 2 * P, 100 * P], [21 * P, P, 201 * P]]
    assert sp.cut(0, 5 * P) == ([], sp.runs)  # nothing there


def test_drop_and_move_follow_unmap_and_mremap() -> None:
    sp = Space(-1, [[10 * P, 4 * P, 100 * P]])
    sp.drop(11 * P, 12 * P)  # MADV_DONTNEED / munmap of one page: a later fault gets zeros
    assert sp.runs == [[10 * P, P, 100 * P], [12 * P, 2 * P, 102 * P]]
    sp.move(12 * P, 50 * P, P)  # mremap of one page: its pending page follows it
    assert sp.runs == [[10 * P, P, 100 * P], [13 * P, P, 103 * P], [50 * P, P, 102 * P]]


def test_take_src_removes_what_a_shadow_block_holds() -> None:
    cs = CowSpace.__new__(CowSpace)  # only its runs: no userfaultfd, no process
    cs.runs = [[10 * P, 4 * P, 100 * P], [20 * P, 2 * P, 104 * P]]
    assert cs.take_src(102 * P, 105 * P) == [(12 * P, 2 * P, 102 * P), (20 * P, P, 104 * P)]
    assert cs.runs == [[10 * P, 2 * P, 100 * P], [21 * P, P, 105 * P]]
