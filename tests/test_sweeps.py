"""Sweeps generated from the catalogue, at a size that fits CI: more seeds, the edge cases where float64
is hardest, and the generated mistakes. The full sizes run with `python -m verify.sweep` (README)."""

import functools

import pytest

import verify
from verify import mutate
from verify.catalogue import load
from verify.catalogue import paths as catalogue
from verify.sweep import edges

CATALOGUE = catalogue()
SEEDS = (1, 2, 3)  # seed 0 is tests/test_catalogue.py's
EDGES = [edge for path in CATALOGUE for edge in edges(path)]
MUTANTS_PER_STATEMENT = 8
MUTANT_PARTS = 6


def assert_no_false_verdict(report):
    """No gradient wrong, no oracle failed or raised; a gradient or oracle that could not decide says
    why."""
    for d in report.derivations:
        assert d.error is None, str(d.error)
        for g in d.gradients:
            assert g.status != "wrong", f"{d.name} {g.name}: {g.diagnosis}"
            assert g.status == "verified" or g.reason, g
            for name, r in g.oracles.items():
                assert r.status not in ("fail", "error"), f"{d.name} {g.name} {name}: {r}"
                assert r.status == "pass" or r.reason, f"{d.name} {g.name} {name}: {r}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("path", CATALOGUE, ids=[p.stem for p in CATALOGUE])
def test_catalogue_verified_under_seed(path, seed):
    """Every catalogue gradient is verified under other seeds too, by exact, fd and numpy."""
    report = verify.check(str(path), oracles=("exact", "fd", "numpy"), seed=seed)
    assert_no_false_verdict(report)
    assert all(g.status == "verified" for g in report.derivations[0].gradients), report.table()


@pytest.mark.parametrize("edge", EDGES, ids=[e.label.replace(" ", "-") for e in EDGES])
def test_edge_case_has_no_false_alarm(edge):
    """Each size fixed to 1, eps = 1e-8 at a batch of 2, inputs within 4% of a constant, logits near 950:
    no correct formula is wrong, and whatever float64 cannot resolve says why."""
    assert_no_false_verdict(verify.check(edge.derivation(), oracles=("exact", "fd", "numpy", "torch")))


def test_edges_cover_the_issue():
    """The edge cases include those the issue names: batch norm at N = 1 and at eps = 1e-8 with N = 2,
    batch and layer norm near a constant, and the softmax cross-entropies near 950."""
    labels = {e.label for e in EDGES}
    assert {
        "batchnorm N=1", "batchnorm eps=1e-8 N=2", "batchnorm within 4% of 1", "layernorm within 4% of 1",
        "softmax logits near 950", "softmax_cross_entropy logits near 950",
        "softmax_cross_entropy_mean logits near 950",
    } <= labels  # fmt: skip


@functools.cache
def mutants_of(path):
    return mutate.mutants(load(path), path.read_text(), MUTANTS_PER_STATEMENT)


@pytest.mark.parametrize("path", CATALOGUE, ids=[p.stem for p in CATALOGUE])
def test_every_gradient_has_its_mutants(path):
    """The mutation sweep below generates at least 8 mistakes for every gradient statement."""
    found = mutants_of(path)
    for st in load(path).gradients:
        assert sum(m.statement == st.target for m in found) >= MUTANTS_PER_STATEMENT, st.target


@pytest.mark.parametrize("part", range(MUTANT_PARTS))
@pytest.mark.parametrize("path", CATALOGUE, ids=[p.stem for p in CATALOGUE])
def test_every_mutant_is_caught(path, part):
    """Every generated mistake comes out invalid, or wrong at the statement changed or at one that uses
    it; none crashes. Each entry's mutants are checked in MUTANT_PARTS tests (every part-th one), so
    that pytest -n spreads a convolution's (9 minutes as one test) over its workers."""
    d = load(path)
    users = {st.target: {u.target for u in d.gradients if st.target in u.reads} for st in d.gradients}
    mine = mutants_of(path)[part::MUTANT_PARTS]
    assert mine, "every entry has at least 8 mutants, so every part some"
    for m in mine:
        report = verify.check(m.text, oracles=("exact",), diagnose=False).derivations[0]
        if report.status == "invalid":
            continue
        wrong = {g.name for g in report.gradients if g.status == "wrong"}
        assert wrong & ({m.statement} | users[m.statement]), f"{m.kind}: {m.line}: {report.status}"
