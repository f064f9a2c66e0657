"""The visit: hand-worked cases from SPEC.md's rules and hypothesis properties."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tomato.core import budget, propagation, visit
from tomato.core.visit import DOWN, LEFT, RIGHT, UP


def scores_from_edges(n: int, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """A (1, n, n) distribution-like matrix with A[i, j] = 0.5 exactly on the given pairs."""
    a = torch.full((1, n, n), 1e-9)
    for i, j in pairs:
        a[0, i, j] = 0.5
    return a


def run_faithful(h: int, w: int, pairs: list[tuple[int, int]], sim: float = 0.1) -> list[int]:
    a = scores_from_edges(h * w, pairs)
    edges = visit.directed_edges(visit.neighbour_scores(a, (h, w)), sim)
    labels, counts = visit.faithful(edges, (h, w))
    assert int(counts[0]) == len(set(labels[0].tolist()))
    return labels[0].tolist()


# Grid 2 x 3, row-major:   0 1 2
#                          3 4 5
def test_faithful_hand_worked_directed_order_matters():
    # 1 -> 0 only: when 0 is the root, A[0, 1] < sim, so 0 stays alone; 1 then roots
    # its own group and cannot take 0 back (already visited).
    assert run_faithful(2, 3, [(1, 0)]) == [0, 1, 2, 3, 4, 5]
    # The same pair the other way round, 0 -> 1: one group {0, 1}.
    assert run_faithful(2, 3, [(0, 1)]) == [0, 0, 1, 2, 3, 4]


def test_faithful_hand_worked_recursion_follows_expanded_token():
    # 0 -> 1 -> 4 -> 3: the test uses the row of the token being expanded, so 3 joins
    # 0's group through 4 even though A[0, 3] is not an edge (3 is not even 0's neighbour).
    # 2 -> 5 directed; 5 -> 2 absent: 2 roots {2, 5}.
    assert run_faithful(2, 3, [(0, 1), (1, 4), (4, 3), (2, 5)]) == [0, 0, 1, 0, 0, 1]
    # Same chain, but the 2 -> 5 edge reversed: 2 is alone, 5 alone.
    assert run_faithful(2, 3, [(0, 1), (1, 4), (4, 3), (5, 2)]) == [0, 0, 1, 0, 0, 2]


def test_faithful_non_neighbour_scores_are_ignored():
    # A huge score between tokens that are not grid neighbours (0 and 5) never joins them.
    assert run_faithful(2, 3, [(0, 5), (5, 0)]) == [0, 1, 2, 3, 4, 5]


def test_row_ends_do_not_wrap():
    # Token 2 (end of row 0) and token 3 (start of row 1) are consecutive indices but not
    # neighbours on the grid.
    assert run_faithful(2, 3, [(2, 3), (3, 2)]) == [0, 1, 2, 3, 4, 5]


def test_neighbours_table():
    nbr = visit.neighbours(2, 3)
    assert nbr[0].tolist() == [-1, 1, -1, 3]  # left, right, up, down
    assert nbr[4].tolist() == [3, 5, 1, -1]


def test_grid_shape_errors():
    assert visit.grid_shape(196) == (14, 14)
    assert visit.grid_shape(140, (14, 10)) == (14, 10)
    with pytest.raises(ValueError, match="square"):
        visit.grid_shape(140)
    with pytest.raises(ValueError, match="does not match"):
        visit.grid_shape(196, (13, 14))


@pytest.mark.parametrize("bad", [float("nan"), -1e-7, torch.tensor([0.1, -0.2])])
def test_bad_sim_is_rejected(bad):
    with pytest.raises(ValueError, match="sim"):
        visit.directed_edges(torch.zeros(2, 4, 4), bad)


def test_no_recursion_limit_on_a_long_snake():
    # A 60 x 60 grid joined into one serpentine path of 3,600 tokens: a recursive visit
    # would exceed Python's default recursion limit of 1,000.
    h = w = 60
    edges = torch.zeros(1, h * w, 4, dtype=torch.bool)
    for r in range(h):
        edges[0, r * w : (r + 1) * w - 1, RIGHT] = True
        edges[0, r * w + 1 : (r + 1) * w, LEFT] = True
        end = (r + 1) * w - 1 if r % 2 == 0 else r * w
        if r + 1 < h:
            edges[0, end, DOWN] = True
            edges[0, end + w, UP] = True
    labels, counts = visit.faithful(edges, (h, w))
    assert int(counts[0]) == 1
    plabels, pcounts = visit.parallel(edges, (h, w))
    assert int(pcounts[0]) == 1


# ---------------------------------------------------------------- properties

@st.composite
def edge_batches(draw, symmetric: bool = False):
    h = draw(st.integers(1, 7))
    w = draw(st.integers(1, 7))
    b = draw(st.integers(1, 3))
    p = draw(st.floats(0.0, 1.0))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    e = torch.rand(b, h * w, 4, generator=g) < p
    nbr = visit.neighbours(h, w)
    e &= (nbr >= 0).unsqueeze(0)
    if symmetric:
        # Mirror every edge so that i -> j exists iff j -> i does.
        e4 = e.view(b, h, w, 4).clone()
        e4[:, :, 1:, LEFT] = e4[:, :, :-1, RIGHT]
        e4[:, 1:, :, UP] = e4[:, :-1, :, DOWN]
        e = e4.view(b, h * w, 4)
    return e, (h, w)


def check_partition(labels: torch.Tensor, counts: torch.Tensor, grid: tuple[int, int]) -> None:
    h, w = grid
    nbr = visit.neighbours(h, w).tolist()
    for lab, cnt in zip(labels.tolist(), counts.tolist()):
        groups: dict[int, list[int]] = {}
        for i, g in enumerate(lab):
            groups.setdefault(g, []).append(i)
        # Labels are exactly 0..G-1, numbered by root (smallest member) order.
        assert sorted(groups) == list(range(cnt))
        roots = [min(groups[g]) for g in range(cnt)]
        assert roots == sorted(roots)
        assert sum(len(m) for m in groups.values()) == h * w
        # Each group is 4-connected on the grid.
        for members in groups.values():
            ms = set(members)
            seen, todo = {members[0]}, [members[0]]
            while todo:
                i = todo.pop()
                for j in nbr[i]:
                    if j in ms and j not in seen:
                        seen.add(j)
                        todo.append(j)
            assert seen == ms


def refines(fine: torch.Tensor, coarse: torch.Tensor) -> bool:
    """Every group of `fine` lies inside one group of `coarse`."""
    for f, c in zip(fine.tolist(), coarse.tolist()):
        owner: dict[int, int] = {}
        for a, b in zip(f, c):
            if owner.setdefault(a, b) != b:
                return False
    return True


@settings(max_examples=60, deadline=None)
@given(edge_batches())
def test_faithful_labels_partition_into_connected_groups(case):
    edges, grid = case
    labels, counts = visit.faithful(edges, grid)
    check_partition(labels, counts, grid)


@settings(max_examples=60, deadline=None)
@given(edge_batches())
def test_faithful_groups_are_reachable_from_their_root(case):
    edges, grid = case
    labels, _ = visit.faithful(edges, grid)
    nbr = visit.neighbours(*grid).tolist()
    for lab, e in zip(labels.tolist(), edges.tolist()):
        for g in set(lab):
            members = {i for i, x in enumerate(lab) if x == g}
            root = min(members)
            seen, todo = {root}, [root]
            while todo:
                i = todo.pop()
                for d in range(4):
                    j = nbr[i][d]
                    if j in members and e[i][d] and j not in seen:
                        seen.add(j)
                        todo.append(j)
            assert seen == members


@settings(max_examples=150, deadline=None)
@given(edge_batches())
def test_parallel_directed_equals_faithful_on_every_graph(case):
    # The faithful root of j is the smallest token that reaches j (visit's docstring), so
    # the parallel min-ancestor labelling reproduces the sequential visit exactly.
    edges, grid = case
    f_labels, f_counts = visit.faithful(edges, grid)
    p_labels, p_counts = visit.parallel(edges, grid, "directed")
    assert torch.equal(p_labels, f_labels) and torch.equal(p_counts, f_counts)


@settings(max_examples=60, deadline=None)
@given(edge_batches(symmetric=True))
def test_parallel_equals_faithful_on_symmetric_graphs(case):
    edges, grid = case
    f_labels, f_counts = visit.faithful(edges, grid)
    for rule in visit.RULES:
        p_labels, p_counts = visit.parallel(edges, grid, rule)
        assert torch.equal(p_labels, f_labels)
        assert torch.equal(p_counts, f_counts)


@settings(max_examples=60, deadline=None)
@given(edge_batches())
def test_parallel_partitions_bracket_the_faithful_one(case):
    edges, grid = case
    f_labels, _ = visit.faithful(edges, grid)
    both, both_counts = visit.parallel(edges, grid, "both")
    either, either_counts = visit.parallel(edges, grid, "either")
    check_partition(both, both_counts, grid)
    check_partition(either, either_counts, grid)
    assert refines(both, f_labels)
    assert refines(f_labels, either)


@settings(max_examples=30, deadline=None)
@given(edge_batches())
def test_batched_equals_per_image(case):
    edges, grid = case
    for method, rule in [("faithful", "directed"), ("parallel", "directed"), ("parallel", "either"), ("parallel", "both")]:
        labels, counts = visit.group(edges, grid, method, rule)
        for i in range(edges.shape[0]):
            li, ci = visit.group(edges[i : i + 1], grid, method, rule)
            assert torch.equal(li[0], labels[i]) and int(ci) == int(counts[i])


def test_sim_extremes_on_a_real_distribution():
    torch.manual_seed(0)
    x = torch.randn(2, 36, 16)
    a = torch.softmax(x @ x.transpose(1, 2), dim=-1)
    s = visit.neighbour_scores(a, (6, 6))
    for method in visit.METHODS:
        _, counts = visit.group(visit.directed_edges(s, 0.0), (6, 6), method)
        assert counts.tolist() == [1, 1]  # sim = 0: every neighbour passes, one group
        _, counts = visit.group(visit.directed_edges(s, math.inf), (6, 6), method)
        assert counts.tolist() == [36, 36]  # sim = inf: nothing merges


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 36), st.integers(0, 2**31 - 1), st.sampled_from(visit.METHODS))
def test_budget_search_fits_and_is_tight(k, seed, method):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 36, 8, generator=g)
    s = visit.neighbour_scores(torch.softmax(x @ x.transpose(1, 2), dim=-1), (6, 6))
    sim = budget.search_sim(s, (6, 6), k, method)
    _, counts = visit.group(visit.directed_edges(s.double(), sim), (6, 6), method)
    assert (counts <= k).all()
    # Tight: the next larger candidate threshold would exceed the budget (the group count
    # is monotone in sim for both methods).
    for i in range(3):
        above = s[i][s[i].double() > sim[i]]
        if above.numel():
            nxt = above.double().min()
            _, c = visit.group(visit.directed_edges(s[i : i + 1].double(), nxt), (6, 6), method)
            assert int(c) > k


def test_budget_argument_errors():
    assert budget.budget_tokens(196, keep_ratio=0.5) == 98
    assert budget.budget_tokens(196, tokens=500) == 196
    for bad in (0.0, 1.5, float("nan"), -0.1):
        with pytest.raises(ValueError, match="keep_ratio"):
            budget.budget_tokens(196, keep_ratio=bad)
    with pytest.raises(ValueError, match="tokens"):
        budget.budget_tokens(196, tokens=0)
    with pytest.raises(ValueError, match="exactly one"):
        budget.budget_tokens(196, keep_ratio=0.5, tokens=3)


def test_faithful_order_is_the_recursion_preorder():
    # 2 x 3 grid, edges 0 -> 3 (down), 0 -> 1 (right), 1 -> 2, 3 -> 4. The recursion tries
    # left, right, up, down: from 0 it goes right to 1, then 1's right 2, back, then 0's
    # down 3, then 3's right 4. Token 5 roots its own group last.
    order, labels = visit.faithful_order(
        visit.directed_edges(visit.neighbour_scores(scores_from_edges(6, [(0, 3), (0, 1), (1, 2), (3, 4)]), (2, 3)), 0.1)[0],
        (2, 3),
    )
    assert order == [0, 1, 2, 3, 4, 5]
    assert labels == [0, 0, 0, 0, 0, 1]
    order, _ = visit.faithful_order(
        visit.directed_edges(visit.neighbour_scores(scores_from_edges(6, [(0, 3), (3, 4), (4, 1), (1, 2)]), (2, 3)), 0.1)[0],
        (2, 3),
    )
    assert order == [0, 3, 4, 1, 2, 5]


def test_log_domain_decides_like_probabilities_where_they_are_representable():
    torch.manual_seed(0)
    x = torch.randn(2, 64, 32) * 2
    s = x @ x.transpose(1, 2)
    prob = visit.neighbour_scores(torch.softmax(s, dim=-1), (8, 8))
    logp = visit.neighbour_scores(torch.log_softmax(s, dim=-1), (8, 8))
    representable = prob > 1e-37
    for sim in (1e-2, 1e-7, 1e-20, 1e-30):
        a = visit.directed_edges(prob, sim)
        b = visit.directed_edges(logp, math.log(sim), log=True)
        assert torch.equal(a[representable], b[representable])
        assert not b[~representable].any() or sim < 1e-30
    assert visit.directed_edges(logp, float("-inf"), log=True).sum() == 2 * 2 * (8 * 7 * 2)  # sim=0: all
    assert not visit.directed_edges(logp, float("inf"), log=True).any()


def test_budget_in_log_domain_does_not_collapse_on_peaked_rows():
    # Unscaled 256-d features: every off-diagonal probability underflows to exactly 0 in
    # float32, so in probability space every candidate ties at 0 and the budget collapses
    # the image to one group. Log-probabilities keep the order and meet the budget tightly.
    torch.manual_seed(0)
    x = torch.randn(1, 196, 256) * 3
    s = x @ x.transpose(1, 2)
    prob = visit.neighbour_scores(torch.softmax(s, dim=-1), (14, 14))
    assert (prob[torch.isfinite(prob)] == 0).all()
    k = 167
    sim = budget.search_sim(prob, (14, 14), k, "faithful")
    _, c = visit.faithful(visit.directed_edges(prob.double(), sim), (14, 14))
    assert int(c) == 1  # the failure mode
    logp = visit.neighbour_scores(torch.log_softmax(s, dim=-1), (14, 14)).double()
    log_sim = budget.search_sim(logp, (14, 14), k, "faithful", log=True)
    _, c = visit.faithful(visit.directed_edges(logp, log_sim, log=True), (14, 14))
    assert 150 <= int(c) <= k


# ------------------------------------------- the accelerator path (issue 13, issue 11.7)

from tomato.core import pipeline, similarity  # noqa: E402


@st.composite
def feature_batches(draw):
    h = draw(st.integers(2, 6))
    w = draw(st.integers(2, 6))
    b = draw(st.integers(1, 3))
    c = draw(st.sampled_from([4, 16]))
    scale = draw(st.floats(0.05, 3.0))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1 + h * w, c, generator=g) * scale, (h, w)


def same_grouping(a: pipeline.Grouping, b: pipeline.Grouping) -> bool:
    return (torch.equal(a.labels, b.labels) and torch.equal(a.counts, b.counts)
            and torch.equal(a.log_sim, b.log_sim))


@settings(max_examples=120, deadline=None)
@given(feature_batches(), st.sampled_from([dict(sim=1e-7), dict(sim=1e-3), dict(sim=0.2), dict(sim=0.0),
                                           dict(sim=1e-60), dict(keep_ratio=0.9), dict(keep_ratio=0.5),
                                           dict(tokens=1), dict(tokens=3), dict(tokens=40)]))
def test_pipeline_parallel_equals_faithful_in_both_modes(case, chosen):
    x, grid = case
    f = pipeline.group_tokens(x, pipeline.Settings(**chosen, method="faithful"), grid, 1)
    p = pipeline.group_tokens(x, pipeline.Settings(**chosen, method="parallel"), grid, 1)
    assert same_grouping(f, p)
    assert p.groups == int(p.counts.max())
    merged = pipeline.merge_at_once(x, pipeline.Settings(**chosen, method="parallel"), grid, 1).merged
    assert merged.x.shape[1] == 1 + int(f.counts.max())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(feature_batches(), st.sampled_from([dict(keep_ratio=0.7), dict(tokens=2), dict(sim=1e-9)]))
def test_fallback_paths_stay_exact(monkeypatch_rounds, case, chosen):
    # No propagation rounds at all: every probe over-counts, the exact check fails and the
    # synced bisection takes over; the result must not change.
    x, grid = case
    f = pipeline.group_tokens(x, pipeline.Settings(**chosen, method="faithful"), grid, 1)
    p = pipeline.group_tokens(x, pipeline.Settings(**chosen, method="parallel"), grid, 1)
    assert same_grouping(f, p)


@pytest.fixture
def monkeypatch_rounds(monkeypatch):
    monkeypatch.setattr(budget, "PROBE_ROUNDS", (0, 0))


def faithful_roots(edges: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The smallest member of each token's faithful group: (B, N) long."""
    labels, _ = visit.faithful(edges, grid)
    n = labels.shape[1]
    first = torch.full_like(labels, n).scatter_reduce(1, labels, torch.arange(n).expand_as(labels), "amin")
    return first.gather(1, labels)


@settings(max_examples=80, deadline=None)
@given(edge_batches(), st.integers(0, 4))
def test_propagation_closes_exactly(case, rounds):
    # Both kinds of rounds give ancestors (never below the truth); a labelling flagged
    # closed is the faithful root of every token; settling always ends at the truth.
    edges, grid = case
    gi = visit.grid_index(grid, edges.shape[1])
    truth = faithful_roots(edges, grid)
    for lab in (propagation.propagate(edges, gi, rounds), propagation.listen(edges, gi, rounds)):
        done = propagation.closed(edges, gi, lab)
        assert torch.equal(lab[done], truth[done])
        assert (lab >= truth).all()
        assert torch.equal(propagation.settle(edges, gi, lab, done), truth)
    assert torch.equal(propagation.min_ancestors(edges, gi), truth)
    assert torch.equal(visit.min_ancestors(edges, grid), truth)


def reference_visit(a: torch.Tensor, sim: float, grid: tuple[int, int]) -> list[int]:
    """The reference code's structure on one image: a float32 tensor compared with a
    Python float (PyTorch rounds the float to float32), recursion in visit order."""
    h, w = grid
    n = h * w
    labels = [-1] * n
    group = 0

    def go(i: int) -> None:
        labels[i] = group
        r, c = divmod(i, w)
        for j, ok in ((i - 1, c > 0), (i + 1, c < w - 1), (i - w, r > 0), (i + w, r < h - 1)):
            if ok and labels[j] < 0 and bool(a[i, j] >= sim):
                go(j)

    for i in range(n):
        if labels[i] < 0:
            go(i)
            group += 1
    return labels


def test_boundary_decisions_match_the_reference():
    # sim set exactly to a neighbour's float32 probability: the reference enters that
    # edge (>=); the faithful visit, the parallel visit and the budget search must agree.
    torch.manual_seed(3)
    grid = (5, 6)
    x = torch.randn(2, 1 + 30, 8) * 1.5
    scores = pipeline.neighbour_log_scores(x, grid, 1)
    nbr = visit.neighbours(*grid)
    checked = 0
    for img in range(2):
        f = x[img, 1:]
        a = torch.softmax(f @ f.T, dim=-1)  # the reference's float32 probabilities
        ref_p = a.gather(1, nbr.clamp_min(0)).masked_fill(nbr < 0, 0)
        # Our scores give the reference's probabilities back exactly.
        assert torch.equal(scores[img].exp().float().masked_fill(nbr < 0, 0), ref_p)
        positive = (ref_p > 0).nonzero().tolist()
        for i, d in positive[:: max(1, len(positive) // 5)][:5]:
            sim = float(ref_p[i, d])
            want = reference_visit(a, sim, grid)
            log_sim = torch.tensor([math.log(sim)], dtype=torch.float64)
            for method in visit.METHODS:
                labels, counts = pipeline.labels_at(scores[img : img + 1], grid, log_sim, method)
                assert labels[0].tolist() == want
                got = pipeline.group_tokens(x[img : img + 1], pipeline.Settings(sim=sim, method=method), grid, 1)
                assert got.labels[0].tolist() == want
            # The budget search, given the count this sim keeps, lands on a threshold
            # that decides that edge the same way, by both methods.
            k = int(counts[0])
            picks = [pipeline.group_tokens(x[img : img + 1], pipeline.Settings(tokens=k, method=m), grid, 1)
                     for m in visit.METHODS]
            assert same_grouping(*picks)
            p_pick = float(picks[0].log_sim.exp().float())
            assert p_pick >= sim  # never merges more than the sim that keeps k tokens
            assert reference_visit(a, p_pick, grid) == picks[0].labels[0].tolist()
            checked += 1
    assert checked == 10


def test_underflow_keeps_an_order_below_float32():
    # Peaked rows: float32 rounds most probabilities to 0; their logs stay ordered and
    # below every probability float32 can tell from 0.
    torch.manual_seed(0)
    x = torch.randn(1, 1 + 64, 64) * 3
    logs = similarity.log_distribution("features", x, 1)
    f = x[0, 1:]
    p = torch.softmax(f @ f.T, dim=-1)
    zero = p == 0
    assert zero.any() and (~zero).any()
    assert torch.equal(logs[0][~zero].exp().float(), p[~zero])
    assert logs[0][zero].max() < logs[0][~zero].min()
    assert (logs[0][zero].exp().float() == 0).all()
