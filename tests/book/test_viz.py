"""Pictures for the notebooks: fast checks on hand-made inputs (no model download)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tomato.core import merge, tome
from tomato.book import pictures, walkthrough
from tomato import visit  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_merge_picture_paints_groups_and_marks_only_real_boundaries():
    # 2 x 3 grid of 4-pixel patches:  groups  0 0 1
    #                                         2 0 1
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(8, 12, 3))
    labels = np.array([0, 0, 1, 2, 0, 1])
    border = (1.0, 0.0, 1.0)  # a colour no mean of uniform noise can take
    out = pictures.merge_picture(image, labels, (2, 3), boundary=border)
    assert out.shape == image.shape
    pix = np.repeat(np.repeat(labels.reshape(2, 3), 4, 0), 4, 1)
    is_border = np.all(out == np.array(border), axis=-1)
    for g in range(3):
        members = pix == g
        mean = image[members].mean(axis=0)
        inside = members & ~is_border
        assert inside.any()
        np.testing.assert_allclose(out[inside], np.broadcast_to(mean, out[inside].shape))
    # Border pixels are exactly the pixels with a differently-labelled 4-neighbour.
    expect = np.zeros(pix.shape, dtype=bool)
    expect[:, 1:] |= pix[:, 1:] != pix[:, :-1]
    expect[:, :-1] |= pix[:, 1:] != pix[:, :-1]
    expect[1:, :] |= pix[1:, :] != pix[:-1, :]
    expect[:-1, :] |= pix[1:, :] != pix[:-1, :]
    np.testing.assert_array_equal(is_border, expect)
    # In particular no border runs between patches 0, 1 and 4 of group 0: column 3|4
    # in row 0..3 (patches 0|1) and rows 3|4 in columns 4..7 (patches 1|4).
    assert not is_border[0:3, 3:5].any()
    assert not is_border[3:5, 5:7].any()


def test_merge_picture_single_group_has_no_boundary():
    image = np.random.default_rng(1).uniform(size=(6, 6, 3))
    out = pictures.merge_picture(image, np.zeros(9, dtype=int), (3, 3), boundary=(1, 0, 1))
    np.testing.assert_allclose(out, np.broadcast_to(image.reshape(-1, 3).mean(0), image.shape))


def test_merge_picture_rejects_a_grid_that_does_not_tile_the_image():
    with pytest.raises(ValueError, match="patches"):
        pictures.merge_picture(np.zeros((10, 10, 3)), np.zeros(9, dtype=int), (3, 3))


def test_group_picture_tints_groups_and_leaves_singletons_untouched():
    image = np.random.default_rng(2).uniform(size=(8, 12, 3))
    labels = np.array([0, 0, 1, 2, 3, 4])  # 2 x 3 grid of 4-px patches: one pair, four singletons
    border = (1.0, 0.0, 1.0)
    out = pictures.group_picture(image, labels, (2, 3), boundary=border)
    inner = ~np.all(out == np.array(border), axis=-1)
    pix = np.repeat(np.repeat(labels.reshape(2, 3), 4, 0), 4, 1)
    pair, single = inner & (pix == 0), inner & (pix != 0)
    assert pair.any() and single.any()
    np.testing.assert_array_equal(out[single], image[single])
    assert np.abs(out[pair] - image[pair]).min() > 0


def test_labels_from_tome_source_hand_made():
    # 1 prefix token + 4 patches -> outputs: cls, {patch 2}, {patch 0, patch 3}, {patch 1}
    source = torch.tensor([[
        [1, 0, 0, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 1, 0, 0, 1],
        [0, 0, 1, 0, 0],
    ]], dtype=torch.float32)
    labels = pictures.labels_from_tome_source(source, num_prefix_tokens=1)
    # Numbered by each group's smallest patch: {0, 3} -> 0, {1} -> 1, {2} -> 2.
    assert labels.tolist() == [[0, 1, 2, 0]]


def test_labels_from_tome_source_matches_real_tome_merges():
    torch.manual_seed(0)
    b, t, c = 2, 1 + 16, 8
    x = torch.randn(b, t, c)
    source = None
    for _ in range(3):
        m = tome.match(x, 2, num_prefix_tokens=1)
        source = tome.track_source(m, source)
        x, _ = tome.merge(m, x)
    labels = pictures.labels_from_tome_source(source, 1)
    assert labels.shape == (b, 16)
    # 16 patches lose 6 tokens -> 10 groups, every patch in exactly one.
    assert (labels.amax(dim=1) + 1).tolist() == [10, 10]
    assert torch.equal(source[:, :, 1:].sum(dim=1), torch.ones(b, 16))


def test_to_display_round_trips_a_normalised_image(vit):
    timm = pytest.importorskip("timm")
    model = vit("deit_tiny_patch16_224")
    cfg = timm.data.resolve_model_data_config(model)
    rgb = torch.rand(3, 32, 32)
    mean = torch.tensor(cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(cfg["std"]).view(3, 1, 1)
    out = pictures.to_display((rgb - mean) / std, model)
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(out, rgb.permute(1, 2, 0).numpy(), atol=1e-6)


def test_changed_tokens_ignores_label_values():
    a = np.array([0, 0, 1, 1, 2])
    assert not pictures.changed_tokens(a, np.array([5, 5, 3, 3, 9])).any()
    # Joining groups 1 and 2 changes exactly their tokens.
    assert pictures.changed_tokens(a, np.array([0, 0, 1, 1, 1])).tolist() == [False, False, True, True, True]


def test_token_map_and_flood_fill_frames_return_figures():
    fig, axes = plt.subplots(1, 2)
    values = torch.rand(16)
    pictures.token_map(axes[0], values, (4, 4), log=True, label="log10", mark=5)
    pictures.token_map(axes[1], values, (4, 4), image=np.zeros((64, 64, 3)), mark=0)
    a = torch.full((1, 16, 16), 1e-9)
    for i, j in [(0, 1), (1, 5), (5, 4), (12, 8), (2, 3), (3, 2)]:
        a[0, i, j] = 0.5
    edges = visit.directed_edges(visit.neighbour_scores(a, (4, 4)), 0.1)[0]
    order, labels = visit.faithful_order(edges, (4, 4))
    assert sorted(order) == list(range(16))
    fig = walkthrough.flood_fill_frames(order, labels, (4, 4), n_frames=6, edges=edges, cols=3)
    assert len([ax for ax in fig.axes if ax.axison]) == 6


def test_tables_and_plots_run_on_small_inputs():
    torch.manual_seed(0)
    grid = (4, 4)
    a = torch.softmax(torch.randn(2, 16, 16) * 4, dim=-1)
    b = torch.softmax(torch.randn(2, 16, 16), dim=-1)
    sa, sb = visit.neighbour_scores(a.log(), grid), visit.neighbour_scores(b.log(), grid)
    table = walkthrough.edge_agreement_table({"features": sa, "attention": sb}, grid, sims=(1e-2, 1e-7))
    assert list(table.index) == ["0.01", "1e-07"]
    assert ((table["same decision (%)"] >= 0) & (table["same decision (%)"] <= 100)).all()
    # The log-domain test decides like the probabilities themselves.
    pa = visit.directed_edges(visit.neighbour_scores(a, grid), 1e-2)
    valid = torch.isfinite(sa)
    assert table.loc["0.01", "edges passing, features (%)"] == pytest.approx(100 * pa[valid].double().mean().item())
    budget_table = walkthrough.metric_budget_agreement({"features": sa, "attention": sb}, grid, keep_ratios=(0.5,))
    assert budget_table.loc["0.5", "tokens kept, features"] <= 8
    same = walkthrough.metric_budget_agreement({"a": sa, "b": sa}, grid, keep_ratios=(0.5,))
    assert same.loc["0.5", "ARI between the metrics"] == 1.0
    fig, axes = plt.subplots(1, 3)
    walkthrough.score_histogram(axes[:2], {"features": sa / np.log(10), "attention": sb / np.log(10)},
                        symlog={"features": True})
    share, share_passing = walkthrough.asymmetry_scatter(axes[2], sa / np.log(10), grid, sim=1e-2)
    assert 0.0 <= share <= share_passing <= 1.0
    fig, ax = plt.subplots()
    walkthrough.tokens_per_block_plot(ax, {"DeiT": [17] * 3, "ToMato": [9] * 3}, input_tokens=17)
    walkthrough.token_cut_plot(ax, None, np.array([5.0, 10.0]))
    walkthrough.size_histogram(ax, {"x": torch.tensor([1, 1, 2, 0, 5])})
    merged = merge.merge_groups(torch.randn(1, 17, 3), torch.arange(16).view(1, 16) // 2,
                                torch.tensor([8]), 1)
    assert merged.size[0, 1:].sum() == 16


def test_agreement_summary():
    rows = [
        {"index": i, "setting": "sim=1e-07", "sim": 1e-7, "tokens_faithful": 190,
         "tokens_either": 188, "tokens_both": 192, "same_directed": True,
         "ari_either": 1.0 if i else 0.9, "ari_both": 1.0, "identical_either": 1.0 if i else 0.95,
         "identical_both": 1.0}
        for i in range(4)
    ]
    s = walkthrough.agreement_summary(rows)
    assert s.loc["sim=1e-07", "images"] == 4
    assert s.loc["sim=1e-07", "either == faithful (% images)"] == 75.0


def test_sliders_build_headless():
    pytest.importorskip("ipywidgets")
    torch.manual_seed(0)
    scores = visit.neighbour_scores(torch.log_softmax(torch.randn(1, 16, 16) * 3, -1), (4, 4))[0]
    image = np.random.default_rng(0).uniform(size=(16, 16, 3))
    for make, other in ((pictures.sim_slider, 1e-1), (pictures.keep_slider, 0.25)):
        box = make(image, scores, (4, 4))
        slider, picture = box.children
        before = picture.value
        assert before[:4] == b"\x89PNG"
        slider.value = other  # the picture is redrawn on change, with no front end
        assert picture.value != before


def test_log10_distribution_matches_the_probabilities_where_representable(vit):
    pytest.importorskip("timm")
    from tomato.core import probe

    model = vit("deit_tiny_patch16_224")
    b0 = probe.block0(model, torch.randn(1, 3, 224, 224))
    for metric in ("features", "attention"):
        logs = walkthrough.log10_distribution(b0, metric)
        probs = b0.distribution(metric).double()
        assert logs.shape == probs.shape == (1, 196, 196)
        ok = probs > 1e-30
        torch.testing.assert_close(logs[ok], probs[ok].log10(), atol=1e-4, rtol=1e-4)
        assert torch.isfinite(logs).all()


def test_frame_slider_works_without_a_kernel():
    img = np.random.default_rng(0).random((32, 32, 3))
    scores = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    frames = pictures.keep_frames(img, scores, (4, 4), [1.0, 0.5, 0.25], title="t")
    assert [label for label, _ in frames] == ["keep = 1.00", "keep = 0.50", "keep = 0.25"]
    assert all(png.startswith(b"\x89PNG") for _, png in frames)
    html = pictures.frame_slider(frames, "keep", start=1)
    assert html.count("<img ") == 3 and html.count("display:block") == 1
    assert 'type="range" min="0" max="2"' in html and 'value="1"' in html and "<output>keep = 0.50</output>" in html
    assert "<script" not in html  # an inline handler: nothing for a sanitiser to strip as a script block


def test_frame_slider_moves_in_a_real_browser(tmp_path):
    """Chromium moves the range control (an input event, as a reader's drag sends) and
    the page then shows the chosen frame and its label: no kernel involved."""
    import re
    import shutil
    import subprocess

    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                    None)
    if chromium is None:
        pytest.skip("no Chromium")
    img = np.random.default_rng(0).random((32, 32, 3))
    scores = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    html = pictures.frame_slider(pictures.keep_frames(img, scores, (4, 4), [1.0, 0.5, 0.25]), "keep", start=0)
    page = tmp_path / "page.html"
    page.write_text(f"<html><body>{html}<script>var s = document.querySelector('input[type=range]'); "
                    "s.value = 2; s.dispatchEvent(new Event('input'));</script></body></html>")
    out = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'p'}",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    shown = re.findall(r'<img alt="([^"]+)" style="display: ?(\w+)', out)
    assert shown == [("keep = 1.00", "none"), ("keep = 0.50", "none"), ("keep = 0.25", "block")]
    assert re.findall(r"<output>([^<]*)</output>", out) == ["keep = 0.25"]


def test_figure2_draws_each_photo_at_each_setting_reads_it_and_unpatches(vit):
    from tomato.book import figures

    model = vit()
    flat = np.full((224, 224, 3), 0.5)                       # every patch uniform
    noisy = np.random.default_rng(1).random((224, 224, 3))   # none uniform
    photos = figures.Photos(torch.randn(2, 3, 224, 224), [flat, noisy], ["a", "b"], "test")
    fig, seen = figures.draw(model, photos, [1e-7, 0.0], 2, suptitle="t")
    assert len([ax for ax in fig.axes if ax.images]) == 2 * 4  # photo, two ToMato columns, ToMe
    assert fig.axes[3].get_title().startswith("ToMe r=2: ") and not hasattr(model, "_tomato")
    # sim=0 merges every patch into one token; the reading counts the flat photo's 196 uniform patches
    assert seen.kept_mean[1] == 1 and seen.uniform_merged[1] == 100 and seen.uniform_patches == 196
    plt.close(fig)


def test_uniform_patches_and_the_most_uniform_photos():
    from tomato.book import figures

    photo = np.random.default_rng(0).random((28, 28, 3))
    photo[:14, :14] = 0.3  # the top-left 2 x 2 patches of a 4 x 4 grid are flat
    mask = figures.uniform_patches(photo, (4, 4))
    assert mask.reshape(4, 4)[:2, :2].all() and mask.sum() == 4
    photo[:14, :14] = (0.35, 0.47, 0.78)  # a flat blue: uniform, though its channels differ
    assert figures.uniform_patches(photo, (4, 4)).sum() == 4
    groups = figures._in_groups(np.array([[0, 0, 1, 2]]))
    assert groups.tolist() == [[True, True, False, False]]
    # The reading counts the uniform patches only: a flat photo merged whole, a noisy one not at all.
    flat, noisy = np.full((28, 28, 3), 0.5), np.random.default_rng(1).random((28, 28, 3))
    seen = figures.read([1e-7], [np.array([[0] * 16, list(range(16))])], [flat, noisy], (4, 4))
    assert seen.uniform_merged == [100.0] and seen.uniform_patches == 16 and seen.kept_mean == [8.5]


def test_figure2_picks_the_most_uniform_readable_photo_of_each_class(tmp_path, vit):
    from PIL import Image

    from tomato.book import figures
    from tomato.harness import data

    root = tmp_path / "val"
    smoke = data.smoke_samples()
    for s in smoke[:3]:
        (root / s.wnid).mkdir(parents=True, exist_ok=True)
        data.load_image(s.path).resize((224, 224)).save(root / s.wnid / f"{s.path.stem}.JPEG")
    flat = root / smoke[0].wnid / "1_flat.JPEG"
    Image.new("RGB", (224, 224), (90, 120, 200)).save(flat)  # all sky: every patch uniform
    (root / smoke[0].wnid / "0_broken.JPEG").write_bytes(b"not a jpeg")  # passed over, not fatal
    samples, source = figures.candidates(root, per_class=3)
    assert len(samples) == 5 and source.startswith("Imagenette's val photos")
    photos = figures.most_uniform(samples, source, vit(), n=3)
    wnids = sorted({s.wnid for s in smoke[:3]})
    assert photos.images.shape == (3, 3, 224, 224) and len(photos.shown) == 3
    assert photos.names[0] == data.wnid_name(smoke[0].wnid)  # the flat photo leads
    assert sorted(photos.names) == sorted(data.wnid_name(w) for w in wnids)  # one per class
    assert figures.candidates(tmp_path / "absent")[1].startswith("the photos shipped with scikit-image")
