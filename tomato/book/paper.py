"""The paper's reported numbers and claims, as typed constants.

Everything here is copied from "ToMato: Token Merging at Once" (``paper/tomato-paper.txt``)
and nothing is computed from our runs: the notebooks put these values beside ours
(:mod:`tomato.book.report`). Variant strings are the canonical specs of :mod:`tomato.harness.variants`
(``parse(spec).spec == spec``), so a paper row can be joined with our result rows.

The paper's setting: NVIDIA Jetson Nano, batch size 1, ImageNet-Mini validation set
(3,923 images), DeiT-B weights from the DeiT release, latency as printed = mean of 10
inferences measured with NVIDIA Nsight Systems (the authors' own reports show 11 forwards
of one picture on the Nano's CPU: :mod:`tomato.book.profiles`).
"""
from __future__ import annotations

from typing import Final, TypedDict

__all__ = [
    "SETUP",
    "Table1Row",
    "TABLE1",
    "TABLE1_BY_VARIANT",
    "BASELINE",
    "TOME",
    "TOMATO",
    "NUM_PATCHES",
    "TOKEN_CUT_SIM_1E7",
    "TOME_R2_TOKEN_CUT",
    "LATENCY_VS_DEIT",
    "LATENCY_VS_TOME",
    "TOP1_VS_DEIT",
    "TOP1_VS_TOME",
    "TOP5_VS_DEIT",
    "TOP5_VS_TOME",
    "Claim",
    "FIGURES_AND_CLAIMS",
]

#: How the paper measured (for provenance tables next to ours).
SETUP: Final[dict[str, str]] = {
    "model": "DeiT-B (deit_base_patch16_224), pretrained DeiT weights",
    "data": "ImageNet-Mini validation set (3,923 images, 1,000 classes)",
    "device": "NVIDIA Jetson Nano; the authors' Nsight reports show the model on its CPU (see the paper-latency page)",
    "batch_size": "1",
    "latency_protocol": "as printed: mean of 10 inferences, measured with NVIDIA Nsight Systems; "
                        "the authors' reports hold 11 forwards of one picture",
    "code": "reference code derived from facebookresearch/ToMe, timm 0.4.12",
}


class Table1Row(TypedDict):
    """One row of the paper's Table 1 (top-1/top-5 in %, latency in seconds)."""

    model: str
    variant: str
    top1: float
    top5: float
    latency_s: float


#: Canonical variant specs of the three Table-1 models.
BASELINE: Final[str] = "deit"
TOME: Final[str] = "tome:r=2"
TOMATO: Final[str] = "tomato:sim=1e-07"

#: Table 1 of the paper, as printed.
TABLE1: Final[list[Table1Row]] = [
    {"model": "DeiT-B", "variant": BASELINE, "top1": 80.96, "top5": 95.40, "latency_s": 13.2132},
    {"model": "ToMe-B (r=2)", "variant": TOME, "top1": 80.73, "top5": 95.31, "latency_s": 10.9445},
    {"model": "ToMato-B (sim=1e-7)", "variant": TOMATO, "top1": 80.14, "top5": 95.00, "latency_s": 10.2804},
]
TABLE1_BY_VARIANT: Final[dict[str, Table1Row]] = {row["variant"]: row for row in TABLE1}

#: Patch tokens of DeiT-B at 224x224 (a 14x14 grid); token-cut percentages are of these.
NUM_PATCHES: Final[int] = 196

#: "sim = 1e-7 cut the token count by 8.16% to 20.92% per image" (min %, max %).
TOKEN_CUT_SIM_1E7: Final[tuple[float, float]] = (8.16, 20.92)
#: "ToMe with r=2 merges about 15% of the tokens" (%, approximate in the paper).
TOME_R2_TOKEN_CUT: Final[float] = 15.0

#: Stated differences of ToMato-B against DeiT-B and ToMe-B (latency in %, accuracy in points).
#: (From Table 1's latencies: -22.196% and -6.068%; the text truncates to two decimals.)
LATENCY_VS_DEIT: Final[float] = -22.19
LATENCY_VS_TOME: Final[float] = -6.06
TOP1_VS_DEIT: Final[float] = -0.82
TOP1_VS_TOME: Final[float] = -0.59
TOP5_VS_DEIT: Final[float] = -0.40
TOP5_VS_TOME: Final[float] = -0.31

class Claim(TypedDict):
    """One reproducible item of the paper.

    ``id``: stable key; ``item``: what the paper shows; ``paper``: its value as text;
    ``value``: the number when there is one (None for figures); ``unit``: "%", "pt"
    (percentage points), "s" or ""; ``needs``: what a like-for-like reproduction needs
    beyond our pipeline: "weights" (pretrained weights and ImageNet data), "jetson"
    (the paper's board), "weights+jetson", or "" (nothing: structural); ``check``: how
    :func:`tomato.book.claims.reproduction_summary` finds our value ("top", "latency_s",
    "top_diff", "latency_ratio", "token_cut", "tome_cut", "figure1", "figure2",
    "figure3"); ``variant`` / ``other``: the variant the value is of and the one it is
    compared with ("" when none); ``measure``: the result column ("top1", "top5", ...).
    """

    id: str
    item: str
    paper: str
    value: float | None
    unit: str
    needs: str
    check: str
    variant: str
    other: str
    measure: str


def _claim(id: str, item: str, paper: str, value: float | None, unit: str, needs: str, check: str,
           variant: str = "", other: str = "", measure: str = "") -> Claim:
    return {"id": id, "item": item, "paper": paper, "value": value, "unit": unit, "needs": needs,
            "check": check, "variant": variant, "other": other, "measure": measure}


def _table1_claims() -> list[Claim]:
    out: list[Claim] = []
    for row in TABLE1:
        v, m = row["variant"], row["model"]
        out.append(_claim(f"table1:{v}:top1", f"Table 1, {m}: top-1", f"{row['top1']:.2f} %", row["top1"], "%",
                          "weights", "top", v, measure="top1"))
        out.append(_claim(f"table1:{v}:top5", f"Table 1, {m}: top-5", f"{row['top5']:.2f} %", row["top5"], "%",
                          "weights", "top", v, measure="top5"))
        out.append(_claim(f"table1:{v}:latency", f"Table 1, {m}: latency", f"{row['latency_s']:.4f} s",
                          row["latency_s"], "s", "jetson", "latency_s", v, measure="median_s"))
    return out


#: Every table cell, figure and claim of the paper, in the order of the reproduction summary.
FIGURES_AND_CLAIMS: Final[list[Claim]] = [
    *_table1_claims(),
    _claim("figure1", "Figure 1: ToMe merges in every block, ToMato once in block 0", "schematic", None, "", "",
           "figure1", TOMATO, TOME),
    _claim("figure2", "Figure 2: merged patches on ImageNet-Mini images", "uniform backgrounds merge at once",
           None, "", "weights", "figure2", TOMATO),
    _claim("figure3", "Figure 3: top-1 vs latency, ToMe sweeping r, ToMato sweeping sim",
           "ToMato's top-1 changes little as latency falls", None, "", "weights+jetson", "figure3"),
    _claim("token_cut_sim_1e-7", "Tokens cut per image by ToMato sim=1e-7",
           f"{TOKEN_CUT_SIM_1E7[0]:.2f}–{TOKEN_CUT_SIM_1E7[1]:.2f} %", None, "%", "weights", "token_cut", TOMATO),
    _claim("tome_r2_token_cut", "Tokens merged by ToMe r=2", f"about {TOME_R2_TOKEN_CUT:.0f} %",
           TOME_R2_TOKEN_CUT, "%", "", "tome_cut", TOME),
    _claim("latency_vs_deit", "Latency of ToMato-B vs DeiT-B", f"{LATENCY_VS_DEIT:+.2f} %", LATENCY_VS_DEIT, "%",
           "weights+jetson", "latency_ratio", TOMATO, BASELINE, "median_s"),
    _claim("latency_vs_tome", "Latency of ToMato-B vs ToMe-B", f"{LATENCY_VS_TOME:+.2f} %", LATENCY_VS_TOME, "%",
           "weights+jetson", "latency_ratio", TOMATO, TOME, "median_s"),
    _claim("top1_vs_deit", "Top-1 of ToMato-B vs DeiT-B", f"{TOP1_VS_DEIT:+.2f} pt", TOP1_VS_DEIT, "pt",
           "weights", "top_diff", TOMATO, BASELINE, "top1"),
    _claim("top1_vs_tome", "Top-1 of ToMato-B vs ToMe-B", f"{TOP1_VS_TOME:+.2f} pt", TOP1_VS_TOME, "pt",
           "weights", "top_diff", TOMATO, TOME, "top1"),
    _claim("top5_vs_deit", "Top-5 of ToMato-B vs DeiT-B", f"{TOP5_VS_DEIT:+.2f} pt", TOP5_VS_DEIT, "pt",
           "weights", "top_diff", TOMATO, BASELINE, "top5"),
    _claim("top5_vs_tome", "Top-5 of ToMato-B vs ToMe-B", f"{TOP5_VS_TOME:+.2f} pt", TOP5_VS_TOME, "pt",
           "weights", "top_diff", TOMATO, TOME, "top5"),
]
