"""Static mode (issue 22): exactly k tokens per image, no host sync, compiled and exported.

The padding this mode adds (size-0 tokens) must change nothing: every image's logits
equal those of its own unpadded run in the budget mode. Real photos at a budget of 138
mostly fit k exactly, so the tests also feed a *flat* photo to a model whose position
embedding is zeroed: its patch tokens are then identical, every neighbour score ties, the
budget search jumps from 196 groups to 1, and static mode pads the other k - 1.
"""
from __future__ import annotations

import pytest
import torch

import tomato
from tomato.core import pipeline
from tomato.harness import data, deploy, dispatch

timm = pytest.importorskip("timm")

K = 10  # small enough that every real photo merges hard and the flat one pads 9


def _photos(model: torch.nn.Module, n: int = 3) -> torch.Tensor:
    tf = data.transform_for(model)
    return torch.stack([tf(data.load_image(s.path)) for s in data.smoke_samples()[:n]])


@pytest.fixture(scope="session")
def tied(vit):
    """``vit`` with the position embedding zeroed: identical patches give identical
    tokens, so their scores tie."""
    def make(name: str = "deit_tiny_patch16_224", **kwargs) -> torch.nn.Module:
        model = vit(name, **kwargs)
        with torch.no_grad():
            model.pos_embed.zero_()
        return model
    return make


@pytest.fixture(scope="module")
def batch(tied):
    model = tied("deit_tiny_patch16_224")
    photos = _photos(model)
    flat = torch.full_like(photos[:1], 0.3)
    return torch.cat([flat, photos])


@pytest.mark.parametrize("method", ["parallel", "faithful"])
@pytest.mark.parametrize("name, kwargs", [
    ("deit_tiny_patch16_224", {}),
    ("deit_tiny_patch16_224", {"global_pool": "avg"}),
    ("deit_tiny_distilled_patch16_224", {}),
])
def test_static_logits_equal_unpadded_budget_mode(tied, batch, method, name, kwargs):
    model = tied(name, **kwargs)
    tomato.patch.timm(model)
    model.method, model.tokens = method, K
    with torch.inference_mode():
        alone = [model(img[None]) for img in batch]  # each image unpadded
        model.static = True
        model(batch[:1])  # the flat photo alone: 1 group, still k tokens long
        assert tomato.patch.state(model).tokens_per_block[-1] == model.num_prefix_tokens + K
        static = model(batch)
    st = tomato.patch.state(model)
    assert st.tokens_per_block[-1] == model.num_prefix_tokens + K  # exactly k for all
    assert int(st.tokens[0]) == 1 and (st.tokens[1:] <= K).all()  # the flat photo padded
    torch.testing.assert_close(static, torch.cat(alone), rtol=1e-4, atol=1e-5)
    if method == "parallel":
        assert bool(st.exact.all())


def test_static_forward_makes_no_host_sync_and_fixed_ops(tied, batch):
    model = tied("deit_tiny_patch16_224")
    tomato.patch.timm(model)
    model.method, model.tokens, model.static = "parallel", 138, True
    other = batch.flip(0).clone()  # other photos in another order
    with torch.inference_mode():
        model(batch)
        four = dispatch.count_call(lambda: model(batch))
        one_batch = other[:1].clone()
        one = dispatch.count_call(lambda: model(one_batch))
    assert four.syncs == 0 and one.syncs == 0, (dict(four.by_sync), dict(one.by_sync))
    assert four.ops == one.ops and four.by_op == one.by_op


def test_a_missed_bracket_is_flagged_not_hidden(tied, batch, monkeypatch):
    # Without propagation rounds the probes over-count, the bracket misses on real
    # photos, and static mode (which cannot fall back) must say so per image.
    from tomato.core import budget

    monkeypatch.setattr(budget, "STATIC_PROBE_ROUNDS", (0, 0))
    model = tied("deit_tiny_patch16_224")
    tomato.patch.timm(model)
    model.method, model.tokens = "parallel", K
    with torch.inference_mode():
        exact_tokens = []
        for img in batch:
            model(img[None])
            exact_tokens.append(tomato.patch.state(model).tokens)
        exact_tokens = torch.cat(exact_tokens)
        model.static = True
        model(batch)
    st = tomato.patch.state(model)
    missed = ~st.exact
    assert bool(missed.any())
    assert bool((st.tokens <= exact_tokens).all())  # a miss only ever merges more
    assert bool((st.tokens < exact_tokens).any())
    assert torch.equal(st.tokens[~missed], exact_tokens[~missed])


def test_static_needs_a_budget(vit):
    model = tomato.patch.timm(vit("deit_tiny_patch16_224"))
    with pytest.raises(ValueError, match="set model.tokens or model.keep_ratio first"):
        model.static = True
    model.keep_ratio = 0.7
    model.static = True
    with pytest.raises(ValueError, match="set model.static = False first"):
        model.sim = 1e-7
    with pytest.raises(ValueError, match="static must be True or False"):
        model.static = 1
    assert model.keep_ratio == 0.7 and model.static
    with pytest.raises(ValueError, match="static mode keeps exactly k tokens"):
        pipeline.Settings(sim=1e-7, static=True).validate()


@pytest.mark.slow  # about a minute of inductor compilation on a 2-core CPU
def test_fullgraph_compile_once_per_batch_size(tied, batch):
    import torch._dynamo

    model = tied("deit_tiny_patch16_224")
    tomato.patch.timm(model)
    model.method, model.tokens, model.static = "parallel", K, True
    torch._dynamo.reset()
    fn = deploy.compiled(model)  # fullgraph: a graph break raises instead of splitting
    other = batch.flip(0).clone()
    with torch.inference_mode():
        eager = model(batch)
        with torch._dynamo.config.patch(error_on_recompile=True):
            first = fn(batch)
            second = fn(other)  # other photos, same batch size: no recompile
    torch.testing.assert_close(first, eager, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(second, eager.flip(0), rtol=1e-4, atol=1e-4)


def test_onnx_runtime_logits_equal_eager(tied, batch, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    assert ort
    model = tied("deit_tiny_patch16_224")
    tomato.patch.timm(model)
    model.method, model.tokens, model.static = "parallel", K, True
    path = deploy.export_onnx(model, batch, tmp_path / "static.onnx")
    run = deploy.onnx_runner(path)
    with torch.inference_mode():
        eager = model(batch)
    torch.testing.assert_close(torch.from_numpy(run(batch.numpy())), eager, rtol=1e-4, atol=1e-4)
    # The exported graph is the photos' own: another batch gives its own logits.
    other = batch.flip(0).contiguous()
    torch.testing.assert_close(torch.from_numpy(run(other.numpy())), eager.flip(0), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_replay_equals_eager(tied, batch):
    model = tied("deit_tiny_patch16_224").cuda()
    tomato.patch.timm(model)
    model.method, model.tokens, model.static = "parallel", K, True
    images = batch.cuda()
    with torch.inference_mode():
        eager = model(images)
    replay = deploy.cuda_graphed(model, images)
    torch.testing.assert_close(replay(), eager, rtol=1e-4, atol=1e-4)


def test_static_bench_rows_pair_each_treatment_with_its_own_baseline(vit):
    pytest.importorskip("onnxruntime")
    from tomato.harness import bench

    model = vit("deit_tiny_patch16_224")
    rows = bench.static_run(model=model, runs=2, warmup=1, batch_sizes=(2,), tokens=138,
                            treatments=("eager", "onnxruntime"))
    by = {r.name: r for r in rows}
    assert len(rows) == 6 and all(r.batch == 2 for r in rows)
    for t in ("eager", "onnxruntime"):
        assert by[f"{t}: unpatched"].ratio == 1.0
        assert by[f"{t}: oracle keeps first 138"].tokens == 138.0
        assert 0 < by[f"{t}: tomato tokens=138, static"].tokens <= 138
    assert by["eager: tomato tokens=138, static"].syncs == 0
    with pytest.raises(ValueError, match="needs --device cuda"):
        bench.static_run(model=model, treatments=("cuda-graph",))


@pytest.mark.slow  # two inductor compilations
def test_keep_first_oracle_cuts_under_every_treatment(vit):
    model = vit("deit_tiny_patch16_224")
    oracle = deploy.keep_first(model, 20)
    x = _photos(model, 2)
    with torch.inference_mode():
        want = model.forward_head(model.norm(model.blocks[1:](model.blocks[0](
            model._pos_embed(model.patch_embed(x)))[:, :21])))
        torch.testing.assert_close(oracle(x), want)
        torch.testing.assert_close(deploy.compiled(oracle)(x), want, rtol=1e-4, atol=1e-4)
