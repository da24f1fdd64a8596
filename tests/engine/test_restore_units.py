"""Restore helpers that need no process."""

from __future__ import annotations

from torpor.engine.restore import _split_private_anonymous


class Area:
    """Stands for a Vma; counts the (field by field) comparisons made on it."""

    compared = 0

    def __init__(self, kind: str, shared: bool, pages: list) -> None:
        self.kind, self.shared, self.pages = kind, shared, pages

    def __eq__(self, other: object) -> bool:
        Area.compared += 1
        return NotImplemented

    __hash__ = object.__hash__


def test_split_private_anonymous_is_one_pass_without_comparisons() -> None:
    """It used to test `v not in lazy_vmas` for every area: a comparison of records for
    each pair (quadratic: 150 ms for 3000 areas)."""
    areas = [Area("anon", False, [1]), Area("anon", True, [1]), Area("file", False, [1]),
             Area("anon", False, [])] * 500
    Area.compared = 0
    lazy, eager = _split_private_anonymous(areas)
    assert Area.compared == 0
    assert lazy == [a for a in areas if a.kind == "anon" and not a.shared and a.pages]
    assert len(lazy) == 500 and len(eager) == 1500
    assert {id(a) for a in lazy}.isdisjoint({id(a) for a in eager})


def _free_address_reference(size: int, avoid: list[tuple[int, int]], start: int) -> int | None:
    """The former implementation (rescan all ranges after each move)."""
    from torpor.engine.restore import TASK_SIZE

    a = start
    ranges = sorted(avoid)
    while a + size < TASK_SIZE:
        clash = next(((s, e) for s, e in ranges if s < a + size and a < e), None)
        if clash is None:
            return a
        a = (clash[1] + (1 << 30)) & ~((1 << 30) - 1)
    return None


def test_free_address_matches_the_rescanning_version() -> None:
    import random

    from torpor.engine.restore import RestoreError, _free_address

    rng = random.Random(7)
    for _ in range(300):
        avoid = []
        for _ in range(rng.randrange(0, 40)):
            s = rng.randrange(0, 64) << 30 | rng.randrange(0, 1 << 30) & ~0xFFF
            avoid.append((s, s + (rng.randrange(1, 1 << 20) << 12 if rng.random() < 0.9 else 3 << 30)))
        size, start = rng.choice([16 << 12, 1 << 30, 5 << 30]), rng.choice([1 << 32, 2 << 32])
        want = _free_address_reference(size, avoid, start)
        if want is None:
            try:
                _free_address(size, avoid, start)
            except RestoreError:
                continue
            raise AssertionError("expected no free range")
        assert _free_address(size, avoid, start) == want
