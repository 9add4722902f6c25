"""RECIST 1.1 agreement between readers on a FiftyOne view: each reader's targets, sums
of diameters, responses and best overall response per patient, and how far the readers
agree on them.

The flow:

1. one bulk read (``values``) of every reader's ``reader_<id>_measurements`` attributes
   with each sample's ``patient_key``, ``timepoint``, ``days_from_baseline`` and the
   adjudicated responses (:data:`ADJUDICATED_FIELD`);
2. per reader per patient (:func:`reader_assessment`, the rules of
   :mod:`multireader.stats.recist`): the baseline targets (the reader's ``target``
   flags, checked with :func:`~multireader.stats.recist.validate_targets`, or chosen
   by :func:`~multireader.stats.recist.select_targets` when the reader flagged none),
   the sum of diameters at every timepoint, percent changes from baseline and nadir,
   the overall response at every follow-up and the best overall response;
3. agreement across readers with patient-bootstrap intervals: response categories per
   follow-up (:func:`~multireader.stats.recist.response_agreement`), sums and percent
   changes (:func:`~multireader.stats.recist.measurement_agreement`), target selection
   (Jaccard per pair), per-lesion diameters (lesions matched by their ``lesion_id``
   within a patient; with ``source="masks"`` the lesion run's matched lesions measured
   on each reader's mask), and each reader's drift by timepoint and by session
   (:func:`~multireader.stats.recist.reader_drift`);
4. ``recist_discordant`` (bool) written on every sample of an analysed patient, the
   results stored as a run of kind ``"recist"``.

Reader fields are only read. Adjudicated responses live in their own field
(:data:`ADJUDICATED_FIELD`, written through ``lineage.records.adjudicate`` by the
``adjudicate_response`` operator) and are reported next to the readers' calls.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict
from dataclasses import fields as dc_fields
from itertools import chain, combinations

import numpy as np

from multireader.core import collect as C
from multireader.core import fields as F
from multireader.core import runs as RUNS
from multireader.core.bulk import write_sample_fields
from multireader.core.results import AnalysisResults, ResultsError
from multireader.errors import MultireaderError
from multireader.progress import ProgressFn, report
from multireader.stats import recist as R
from multireader.stats.agreement import UndefinedStatisticError
from multireader.stats.bootstrap import bootstrap
from multireader.stats.estimates import Estimate

RUN_KIND = "recist"
SOURCES = ("measurements", "masks")
NE_MODES = ("class", "missing")
#: bool on every sample of an analysed patient: the readers' responses differ at a follow-up
DISCORDANT_FIELD = "recist_discordant"
#: the adjudicator's response of a patient-timepoint (fo.Classification), its own field
ADJUDICATED_FIELD = "adjudicated_response"
#: what an adjudicator may record
ADJUDICABLE = ("CR", "PR", "SD", "PD", "NE", R.NON_CR_NON_PD)
MAX_LISTED = 500
MEASUREMENT_ATTRS = (
    "lesion_id",
    "long_axis_mm",
    "short_axis_mm",
    "target",
    "site",
    "new_lesion",
    "lymph_node",
    "session",
    "read_at",
)
#: what the report shows of an adjudication (the history holds every version)
_ADJ_ATTRS = ("label", "reader", "reason", "read_at")


class RecistAnalysisError(MultireaderError):
    """The RECIST analysis cannot run on this view (the message says why)."""


def rules_from(rules=None, **overrides) -> R.RecistRules:
    """A :class:`~multireader.stats.recist.RecistRules` from None (the published
    thresholds), a RecistRules, or a mapping of its fields; ``overrides`` on top."""
    if rules is None:
        base = {}
    elif isinstance(rules, R.RecistRules):
        base = asdict(rules)
    elif isinstance(rules, dict):
        base = dict(rules)
    else:
        raise RecistAnalysisError(f"rules must be None, a RecistRules or a dict; got {rules!r}")
    base.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dc_fields(R.RecistRules)}
    bad = sorted(set(base) - known)
    if bad:
        raise RecistAnalysisError(f"unknown RECIST rule(s) {bad}; known: {sorted(known)}")
    try:
        return R.RecistRules(**base)
    except R.RecistError as e:
        raise RecistAnalysisError(str(e)) from e


# ------------------------------------------------------------------ reading


def _natural(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _session_index(sessions: list, read_at: list) -> np.ndarray:
    """One reader's session names as 0, 1, ... in reading order (first read time, then
    name); -1 where unknown."""
    out = np.full(len(sessions), -1.0)
    first: dict[str, float] = {}
    for s, t in zip(sessions, read_at, strict=True):
        if s is None or s == "":
            continue
        ts = t.timestamp() if hasattr(t, "timestamp") else math.inf
        first[str(s)] = min(first.get(str(s), math.inf), ts)
    order = sorted(first, key=lambda s: (first[s], _natural(s)))
    rank = {s: i for i, s in enumerate(order)}
    for i, s in enumerate(sessions):
        if s is not None and s != "":
            out[i] = rank[str(s)]
    return out


def _flat(col: list) -> tuple[list, np.ndarray]:
    """The per-polyline values of one per-sample list column, and the sample of each."""
    counts = np.fromiter((len(v) if v else 0 for v in col), dtype=np.int64, count=len(col))
    return list(chain.from_iterable(v for v in col if v)), counts


def _read(view, rs: C.ReaderSet, with_points: bool) -> dict:
    """Every measurement of every chosen reader, one bulk ``values`` call."""
    dataset = view._dataset
    base = ["id", F.PATIENT_KEY, F.TIMEPOINT, F.STUDY_UID, F.SERIES_UID, F.SLICE_INDEX]
    missing = [p for p in (F.PATIENT_KEY, F.TIMEPOINT) if not dataset.has_field(p)]
    if missing:
        raise RecistAnalysisError(
            f"dataset {dataset.name!r} lacks {', '.join(missing)}: import the studies with "
            "import_dicom and the measurements with import_measurements, which gives every "
            "study its timepoint"
        )
    opt = [p for p in (F.DAYS_FROM_BASELINE,) if dataset.has_field(p)]
    adj = (
        [f"{ADJUDICATED_FIELD}.{a}" for a in _ADJ_ATTRS]
        if dataset.has_field(ADJUDICATED_FIELD)
        else []
    )
    attrs = list(MEASUREMENT_ATTRS) + (["points"] if with_points else [])
    mpaths = [f"{f}.polylines.{a}" for f in rs.fields for a in attrs]
    cols = dict(zip(base + opt + adj + mpaths, view.values(base + opt + adj + mpaths), strict=True))
    n = len(cols["id"])
    per_reader = []
    for _r, f in enumerate(rs.fields):
        flat = {}
        counts = None
        for a in attrs:
            vals, c = _flat(cols[f"{f}.polylines.{a}"])
            flat[a] = vals
            counts = c if counts is None else counts
        sample = np.repeat(np.arange(n), counts)
        flat["sample"] = sample
        flat["session_index"] = _session_index(flat["session"], flat["read_at"])
        per_reader.append(flat)
    return {
        "n": n,
        "ids": cols["id"],
        "patient": cols[F.PATIENT_KEY],
        "timepoint": cols[F.TIMEPOINT],
        "study": cols[F.STUDY_UID],
        "series": cols[F.SERIES_UID],
        "slice_index": cols[F.SLICE_INDEX],
        "days": cols.get(F.DAYS_FROM_BASELINE),
        "adjudicated": {a: cols[f"{ADJUDICATED_FIELD}.{a}"] for a in _ADJ_ATTRS} if adj else None,
        "readers": per_reader,
    }


def _num(v) -> float:
    return math.nan if v is None else float(v)


# ------------------------------------------------------- one reader, one patient


def _resolved(long_mm: float, short_mm: float, nodal: bool, rules: R.RecistRules) -> bool:
    if nodal:
        return math.isfinite(short_mm) and short_mm < rules.cr_node_mm
    return math.isfinite(long_mm) and long_mm <= 0


def _code(resp: str | None) -> str | None:
    """The category agreement is computed on: non-CR/non-PD (no target disease) is SD."""
    if resp is None:
        return None
    return "SD" if resp == R.NON_CR_NON_PD else resp


def _measurable_quick(les: R.Lesion, rules: R.RecistRules) -> bool:
    """A loose pre-check of measurability (a superset of the violations
    :func:`~multireader.stats.recist.validate_targets` finds), so the full check runs
    only where it may report something."""
    if les.nodal:
        return les.short_axis_mm >= rules.node_target_mm + 1e-6
    return les.long_axis_mm >= rules.measurable_long_axis_mm + 1e-6


def _may_violate(chosen: list[R.Lesion], rules: R.RecistRules) -> bool:
    if len(chosen) > rules.max_targets:
        return True
    per: dict[str, int] = {}
    for x in chosen:
        o = "lymph node" if x.nodal and rules.nodes_one_organ else x.organ
        per[o] = per.get(o, 0) + 1
        if per[o] > rules.max_per_organ or not _measurable_quick(x, rules):
            return True
    return False


def _baseline_choice(lesions: dict, rules: R.RecistRules) -> dict:
    """One reader's baseline lesions, targets (flagged and validated, or chosen by the
    rule) and non-targets on one patient."""
    base, flagged = [], []
    for lid, by_t in lesions.items():
        m = by_t.get(0)
        if m is None:
            continue
        long_mm, short_mm, target, site, nodal = m
        if (nodal and not math.isfinite(short_mm)) or (not nodal and not math.isfinite(long_mm)):
            continue  # without the diameter that enters the sum it cannot enter RECIST
        base.append(R.Lesion(lid, str(site or "unspecified"), long_mm, short_mm, bool(nodal)))
        if target:
            flagged.append(lid)
    if flagged:
        chosen = [x for x in base if x.lesion_id in set(flagged)]
        violations = (
            [
                {"rule": v.rule, "lesion_ids": list(v.lesion_ids), "message": v.message}
                for v in R.validate_targets(base, flagged, rules)
            ]
            if _may_violate(chosen, rules)
            else []
        )
        targets, selected_by = [x.lesion_id for x in chosen], "reader"
    else:
        targets, selected_by, violations = R.select_targets(base, rules) if base else [], "rule", []
    tset = set(targets)
    by_id = {x.lesion_id: x for x in base}
    non_targets = [
        x.lesion_id
        for x in base
        if x.lesion_id not in tset
        and not (x.nodal and x.short_axis_mm < rules.node_pathological_mm)
    ]
    return {
        "targets": targets,
        "nodal": [by_id[t].nodal for t in targets],
        "selected_by": selected_by,
        "violations": violations,
        "non_targets": non_targets,
    }


def _non_target_status(lesions: dict, non_targets: list, tp: int, rules) -> str | None:
    """CR when every baseline non-target is measured and resolved (0 mm; a node below
    ``rules.cr_node_mm``), non-CR/non-PD when one is measured and not resolved, NE
    otherwise; None without non-target lesions."""
    if not non_targets:
        return None
    present = [lesions[i][tp] for i in non_targets if tp in lesions[i]]
    if not present:
        return "NE"
    if not all(_resolved(m[0], m[1], bool(m[4]), rules) for m in present):
        return R.NON_CR_NON_PD
    return "CR" if len(present) == len(non_targets) else "NE"


def target_responses(
    D: np.ndarray, nodal: np.ndarray, real: np.ndarray, present: np.ndarray, rules
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`multireader.stats.recist.target_response` for many reader-patients at once.

    ``D``: (G, T, K) diameters entering the sum (NaN = not assessed), ``nodal`` and
    ``real`` (G, K) (``real`` False pads a patient with fewer targets), ``present``
    (G, T) (False pads a patient with fewer timepoints). Returns the sums (G, T) and
    the target responses (G, T) as strings ("" at baseline and padding). Equal to the
    per-patient function (tests check every reader-patient).
    """
    G, T, K = D.shape
    r = rules
    Dm = np.where(real[:, None, :], D, 0.0)
    fin = np.isfinite(Dm) | ~real[:, None, :]
    complete = fin.all(2)
    full = np.where(complete, np.where(real[:, None, :], Dm, 0.0).sum(2), np.nan)
    full = np.where(present, full, np.nan)
    s0 = full[:, :1]
    partial = np.nansum(np.where(real[:, None, :], Dm, 0.0), 2)
    run = np.fmin.accumulate(full, axis=1)
    nd = np.concatenate([s0, run[:, :-1]], axis=1)
    tol = 1e-9 * np.maximum(np.maximum(1.0, s0), nd)
    grow = partial - nd
    with np.errstate(invalid="ignore"):
        pd = (grow >= r.pd_change_pct / 100.0 * nd - tol) & (grow >= r.pd_min_increase_mm - tol)
        non_nodal_zero = np.where(real & ~nodal, 1, 0)[:, None, :].astype(bool)
        nn_ok = np.where(non_nodal_zero, Dm <= tol[..., None], True).all(2)
        node_mask = (real & nodal)[:, None, :]
        nd_ok = np.where(node_mask, Dm < r.cr_node_mm - tol[..., None], True).all(2)
        cr = complete & nn_ok & nd_ok
        pr = full - s0 <= r.pr_change_pct / 100.0 * s0 + tol
    out = np.where(
        cr, "CR", np.where(pd, "PD", np.where(~complete, "NE", np.where(pr, "PR", "SD")))
    )
    out = np.where(present, out, "")
    out[:, 0] = ""
    return full, out


def assess_readers(groups: list[dict], rules, *, min_sd_days: float, confirmation_days) -> None:
    """RECIST 1.1 of many reader-patients, in place: each group ``{"lesions",
    "timepoints", "days", "read", "new"}`` gets ``targets``, ``selected_by``,
    ``violations``, ``non_targets``, ``sums``, ``pct_baseline``, ``pct_nadir``,
    ``target_responses``, ``non_target``, ``responses`` (one per follow-up, None where
    the reader did not read it) and ``bor``."""
    for g in groups:
        g.update(_baseline_choice(g["lesions"], rules))
    with_t = [g for g in groups if g["targets"]]
    if with_t:
        G = len(with_t)
        T = max(len(g["timepoints"]) for g in with_t)
        K = max(len(g["targets"]) for g in with_t)
        D = np.full((G, T, K), np.nan)
        nodal = np.zeros((G, K), bool)
        real = np.zeros((G, K), bool)
        present = np.zeros((G, T), bool)
        for i, g in enumerate(with_t):
            present[i, : len(g["timepoints"])] = True
            for j, (t, nod) in enumerate(zip(g["targets"], g["nodal"], strict=True)):
                real[i, j], nodal[i, j] = True, nod
                by_t = g["lesions"][t]
                for k, tp in enumerate(g["timepoints"]):
                    m = by_t.get(tp)
                    if m is not None:
                        D[i, k, j] = m[1] if nod else m[0]
        sums, tr = target_responses(D, nodal, real, present, rules)
        s0 = sums[:, :1]
        with np.errstate(invalid="ignore", divide="ignore"):
            pct_b = 100.0 * (sums - s0) / s0
            run = np.fmin.accumulate(sums, axis=1)
            ndr = np.concatenate([s0, run[:, :-1]], axis=1)
            pct_n = np.where((ndr == 0) & (sums == 0), 0.0, 100.0 * (sums - ndr) / ndr)
        for i, g in enumerate(with_t):
            n = len(g["timepoints"])
            g["sums"] = sums[i, :n].tolist()
            g["pct_baseline"] = pct_b[i, :n].tolist()
            g["pct_nadir"] = pct_n[i, :n].tolist()
            g["target_responses"] = tr[i, 1:n].tolist()
    for g in groups:
        tps = g["timepoints"]
        n = len(tps)
        nts = [_non_target_status(g["lesions"], g["non_targets"], tp, rules) for tp in tps[1:]]
        g["non_target"] = nts
        new = g["new"]
        if g["targets"]:
            resp = [
                R.overall_response(g["target_responses"][k], nts[k], bool(new[k + 1]))
                for k in range(n - 1)
            ]
        else:
            g["sums"] = g["pct_baseline"] = g["pct_nadir"] = [None] * n
            g["target_responses"] = [None] * (n - 1)
            resp = [
                "PD" if (new[k + 1] or nts[k] == "PD") else ("NE" if nts[k] is None else nts[k])
                for k in range(n - 1)
            ]
        resp = [x if g["read"][k + 1] else None for k, x in enumerate(resp)]
        g["responses"] = resp
        given = [(k, _code(x)) for k, x in enumerate(resp) if x is not None]
        if not given:
            g["bor"] = None
            continue
        days = g["days"]
        if days is not None and all(days[k + 1] is not None for k, _ in given):
            d = [float(days[k + 1]) for k, _ in given]
        else:  # unknown intervals: the SD minimum is taken as met
            d = [float(min_sd_days) * (k + 1) for k, _ in given]
        g["bor"] = R.best_overall_response(
            [c for _, c in given], d, min_sd_days=min_sd_days, confirmation_days=confirmation_days
        )


# ------------------------------------------------------------------ the whole view


def _patients(data: dict) -> tuple[dict, list]:
    """Per patient: its samples, timepoints and days; patients skipped with the reason."""
    by_patient: dict = {}
    for i, (p, t) in enumerate(zip(data["patient"], data["timepoint"], strict=True)):
        by_patient.setdefault(p, {}).setdefault(t, []).append(i)
    out, skipped = {}, []
    days = data["days"]
    for p, by_t in by_patient.items():
        if p is None:
            skipped.append({"patient": None, "reason": "samples without a patient_key"})
            continue
        unknown = by_t.pop(None, None)
        tps = sorted(by_t)
        if not tps or tps[0] != 0:
            skipped.append({"patient": p, "reason": f"no baseline (timepoint 0); timepoints {tps}"})
            continue
        if len(tps) < 2:
            skipped.append({"patient": p, "reason": "baseline only, no follow-up"})
            continue
        d = None
        if days is not None:
            d = []
            for t in tps:
                vals = [days[i] for i in by_t[t] if days[i] is not None]
                d.append(vals[0] if vals else None)
            if any(v is None for v in d):
                d = None
        out[p] = {
            "timepoints": tps,
            "samples": by_t,
            "days": d,
            "n_unknown_timepoint": len(unknown or []),
        }
    return out, skipped


def _lesion_tables(data: dict, patients: dict, n_readers: int):
    """``tables[p][r] = {lesion_id: {tp: (long, short, target, site, nodal)}}``, the
    per-lesion rows (patient, lesion id, timepoint) and their reader diameters,
    sessions and sample ids."""
    pt = data["patient"]
    tpv = data["timepoint"]
    tables: dict = {p: [dict() for _ in range(n_readers)] for p in patients}
    new_at: dict = {
        p: np.zeros((n_readers, len(v["timepoints"])), bool) for p, v in patients.items()
    }
    read_at: dict = {
        p: np.zeros((n_readers, len(v["timepoints"])), bool) for p, v in patients.items()
    }
    tp_index = {p: {t: k for k, t in enumerate(v["timepoints"])} for p, v in patients.items()}
    row_of: dict = {}
    rows_d: list[list[float]] = []
    rows_s: list[list[float]] = []
    rows_sample: list[list] = []
    rows_key: list[tuple] = []
    for r, m in enumerate(data["readers"]):
        smp = m["sample"]
        lid, la, sa = m["lesion_id"], m["long_axis_mm"], m["short_axis_mm"]
        tg, site, new, node = m["target"], m["site"], m["new_lesion"], m["lymph_node"]
        sess = m["session_index"]
        for j in range(len(smp)):
            i = int(smp[j])
            p = pt[i]
            if p not in tables:
                continue
            t = tpv[i]
            k = tp_index[p].get(t)
            if k is None:
                continue
            read_at[p][r, k] = True
            if new[j]:
                new_at[p][r, k] = True
            if lid[j] is None:
                continue
            nodal = bool(node[j])
            long_mm, short_mm = _num(la[j]), _num(sa[j])
            tables[p][r].setdefault(str(lid[j]), {})[t] = (
                long_mm,
                short_mm,
                bool(tg[j]),
                site[j],
                nodal,
            )
            key = (p, str(lid[j]), t)
            q = row_of.get(key)
            if q is None:
                q = row_of[key] = len(rows_key)
                rows_key.append(key)
                rows_d.append([math.nan] * n_readers)
                rows_s.append([math.nan] * n_readers)
                rows_sample.append([None] * n_readers)
            rows_d[q][r] = short_mm if nodal else long_mm
            rows_s[q][r] = sess[j] if sess[j] >= 0 else math.nan
            rows_sample[q][r] = data["ids"][i]
    lesion_rows = {
        "keys": rows_key,
        "diameter": np.array(rows_d, float).reshape(len(rows_key), n_readers),
        "session": np.array(rows_s, float).reshape(len(rows_key), n_readers),
        "samples": rows_sample,
    }
    return tables, new_at, read_at, lesion_rows


def _mask_lesion_rows(view, lesion_run_key: str, readers: list[str], data: dict) -> tuple:
    """Per matched lesion of the lesion run and per reader: the long and short axis
    of that reader's mask on the slice where the long axis is largest
    (:func:`multireader.stats.recist.lesion_diameters` on each slice's outline)."""
    dataset = view._dataset
    try:
        run = RUNS.load(dataset, lesion_run_key, "lesions")
    except RUNS.RunError as e:
        raise RecistAnalysisError(
            f"source='masks' needs a lesion run: {e} (run compute_lesion_agreement first)"
        ) from e
    field = (run["results"].get("fields_written") or ["lesions"])[0]
    paths = [
        "id",
        F.PIXEL_SPACING,
        f"{field}.detections.label",
        f"{field}.detections.lesion_id",
        f"{field}.detections.mask",
    ]
    ids, spacing, labels, lids, masks = view.values(paths)
    tp_of = dict(zip(data["ids"], data["timepoint"], strict=True))
    best: dict = {}  # (lesion_id, reader) -> (long, short, sample id)
    for sid, sp, lab, lid, msk in zip(ids, spacing, labels, lids, masks, strict=True):
        if not lab:
            continue
        for who, lesion, mk in zip(lab, lid, msk, strict=True):
            if who not in readers or mk is None or sp is None:
                continue
            d = R.lesion_diameters(np.asarray(mk), sp)
            key = (lesion, who)
            if key not in best or d.long_axis_mm > best[key][0]:
                best[key] = (d.long_axis_mm, d.short_axis_mm, sid)
    rows = run["results"].get("lesions") or []
    keys, D, S_, samples = [], [], [], []
    for row in rows:
        vals, shorts, where = [], [], []
        for who in readers:
            b = best.get((row["lesion_id"], who))
            vals.append(b[0] if b else math.nan)
            shorts.append(b[1] if b else math.nan)
            where.append(b[2] if b else None)
        sid = next((w for w in where if w), None)
        keys.append((row["patient"], row["lesion_id"], tp_of.get(sid)))
        D.append(vals)
        S_.append(shorts)
        samples.append(where)
    n = len(readers)
    return {
        "keys": keys,
        "diameter": np.array(D, float).reshape(len(keys), n),
        "short_axis": np.array(S_, float).reshape(len(keys), n),
        "samples": samples,
        "lesion_run": lesion_run_key,
    }


def _est_json(value, res=None, n=None, note=None) -> dict:
    ci = None if res is None else (res.ci_low, res.ci_high)
    return Estimate(value, ci, n, note).to_json()


def _safe(fn, *args, **kwargs) -> dict:
    """A statistic, or ``{"value": None, "note": why}`` when it is undefined here."""
    try:
        return fn(*args, **kwargs)
    except (R.RecistError, UndefinedStatisticError, ValueError) as e:
        return {"value": None, "note": str(e)}


class _Done:
    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


class _Jobs:
    """The agreement statistics are independent: with many patients and resamples they
    run in worker processes (their bootstraps are CPU-bound numpy), else in line."""

    def __init__(self, parallel: bool, workers: int | None = None):
        self.ex = None
        if parallel:
            import os
            from concurrent.futures import ProcessPoolExecutor

            from multireader.core.parallel import mp_context

            n = min(workers or os.cpu_count() or 1, 4)
            if n > 1:
                self.ex = ProcessPoolExecutor(n, mp_context=mp_context())

    def submit(self, fn, *args, **kwargs):
        if self.ex is None:
            return _Done(fn(*args, **kwargs))
        return self.ex.submit(fn, *args, **kwargs)

    def close(self) -> None:
        if self.ex is not None:
            self.ex.shutdown()


def _mean_ci(values: np.ndarray, groups: np.ndarray, n_boot: int, level: float, seed: int):
    ok = np.isfinite(values)
    if not ok.any():
        return _est_json(None, None, 0, "undefined for every patient")
    f = np.c_[values[ok], np.ones(int(ok.sum()))]
    res = None
    if n_boot and np.unique(groups[ok]).size >= 2:
        res = bootstrap(
            f, lambda s: s[..., 0] / s[..., 1], groups=groups[ok], n_boot=n_boot,
            level=level, seed=seed, method="auto",
        )  # fmt: skip
    return _est_json(float(values[ok].mean()), res, int(ok.sum()))


def compute_recist_agreement(
    samples,
    *,
    readers: list[str] | None = None,
    source: str = "measurements",
    rules=None,
    ne: str = "class",
    min_sd_days: float = 42.0,
    confirmation_days: float | None = None,
    lesion_run_key: str = "lesions",
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    run_key: str = "recist",
    num_workers: int | None = None,
    progress: ProgressFn | None = None,
) -> RecistAgreementResults:
    """RECIST 1.1 per reader and agreement between readers on ``samples``, stored as
    run ``run_key`` (kind ``"recist"``).

    Parameters
    ----------
    samples : a dataset or view with ``reader_<id>_measurements`` fields
        (:func:`multireader.ingest.measurements.import_measurements`), ``patient_key``
        and ``timepoint``.
    readers : reader ids (default: every reader with measurements); at least two.
    source : ``"measurements"`` (the readers' calipers) or ``"masks"``: the per-lesion
        diameter agreement is then computed on the lesion run ``lesion_run_key``'s
        matched lesions, measured on each reader's mask
        (:func:`multireader.stats.recist.lesion_diameters`, the slice where the long
        axis is largest); responses still follow the readers' measurements.
    rules : None (RECIST 1.1), a :class:`~multireader.stats.recist.RecistRules` or a
        dict of its fields.
    ne : ``"class"`` (a not-evaluable call is a category of its own: it differs from a
        PR) or ``"missing"`` (left out of the agreement).
    min_sd_days, confirmation_days : the best overall response
        (:func:`~multireader.stats.recist.best_overall_response`); without
        ``days_from_baseline`` the SD minimum is taken as met.
    level, n_boot, seed : the patient bootstrap of every interval.
    alpha : family-wise level of the drift flags.
    run_key : where the run is stored (a RECIST run there is replaced).
    num_workers : worker processes for the bootstrapped statistics (default: the CPU
        count, at most 4; they run in line with fewer than 100 patients or no resamples).

    Returns
    -------
    :class:`RecistAgreementResults` (see ``docs/recist.md`` for the layout).
    """
    t0 = time.perf_counter()
    if source not in SOURCES:
        raise RecistAnalysisError(f"source: expected one of {SOURCES}, got {source!r}")
    if ne not in NE_MODES:
        raise RecistAnalysisError(f"ne: expected one of {NE_MODES}, got {ne!r}")
    rules = rules_from(rules)
    RUNS.check_key(run_key)
    view = samples.view()
    dataset = view._dataset
    try:
        rs = C.select_readers(dataset, "measurements", readers=readers)
    except C.ReaderSelectionError as e:
        raise RecistAnalysisError(f"no measurements to analyse: {e}") from e
    if len(rs.readers) < 2:
        raise RecistAnalysisError(
            f"RECIST agreement needs at least two readers with measurements; found {rs.readers}"
        )
    nr = len(rs.readers)
    report(progress, 0.02, "reading measurements")
    data = _read(view, rs, with_points=False)
    patients, skipped = _patients(data)
    if not patients:
        why = "; ".join(f"{s['patient']}: {s['reason']}" for s in skipped[:5]) or "no samples"
        raise RecistAnalysisError(f"no patient with a baseline and a follow-up ({why})")
    report(progress, 0.15, f"{len(patients)} patients, {nr} readers")
    tables, new_at, read_at, lesion_rows = _lesion_tables(data, patients, nr)
    report(progress, 0.25, "RECIST per reader")

    # --- per reader per patient
    plist = list(patients)
    patient_rows = []
    groups = []
    for p in plist:
        info = patients[p]
        per = {}
        for r, who in enumerate(rs.readers):
            if not read_at[p][r, 0]:
                per[who] = None  # did not read this patient's baseline
                continue
            g = {
                "lesions": tables[p][r],
                "timepoints": info["timepoints"],
                "days": info["days"],
                "read": read_at[p][r].tolist(),
                "new": new_at[p][r].tolist(),
            }
            per[who] = g
            groups.append(g)
        patient_rows.append(
            {"patient": p, "timepoints": info["timepoints"], "days": info["days"], "readers": per}
        )
    assess_readers(groups, rules, min_sd_days=min_sd_days, confirmation_days=confirmation_days)
    violations = {r: [] for r in rs.readers}
    for row in patient_rows:
        for who, a in row["readers"].items():
            if a is not None:
                for v in a["violations"]:
                    violations[who].append({"patient": row["patient"], **v})

    # --- responses: (patients, readers) per follow-up
    max_fu = max(len(patients[p]["timepoints"]) for p in plist) - 1
    fu_cats = {}  # timepoint -> (patient indices, (n, R) object array)
    all_cats, all_groups, all_keys = [], [], []
    for pi, row in enumerate(patient_rows):
        for k, t in enumerate(row["timepoints"][1:]):
            cats = [
                None if row["readers"][w] is None else _code(row["readers"][w]["responses"][k])
                for w in rs.readers
            ]
            fu_cats.setdefault(t, ([], []))
            fu_cats[t][0].append(pi)
            fu_cats[t][1].append(cats)
            all_cats.append(cats)
            all_groups.append(pi)
            all_keys.append((pi, t))
    report(progress, 0.62, "response agreement")
    jobs = _Jobs(n_boot > 0 and len(plist) >= 100, num_workers)
    resp_agree = {}
    for t in sorted(fu_cats):
        resp_agree[str(t)] = jobs.submit(
            _safe, R.response_agreement, fu_cats[t][1], ne=ne, n_boot=n_boot, level=level, seed=seed
        )
    resp_agree["all"] = jobs.submit(_safe,
        R.response_agreement, all_cats, ne=ne, groups=all_groups, n_boot=n_boot,
        level=level, seed=seed,
    )  # fmt: skip
    bor = [
        [None if row["readers"][w] is None else row["readers"][w]["bor"] for w in rs.readers]
        for row in patient_rows
    ]
    resp_agree["best_overall_response"] = jobs.submit(
        _safe, R.response_agreement, bor, ne=ne, n_boot=n_boot, level=level, seed=seed
    )

    # --- discordance per patient-timepoint, with the adjudications beside it
    adjudicated = _adjudications(data, patients)
    discordant = []
    discordant_patient = np.zeros(len(plist), bool)
    for (pi, t), cats in zip(all_keys, all_cats, strict=True):
        given = [c for c in cats if c is not None and (ne == "class" or c != "NE")]
        if len(given) >= 2 and len(set(given)) > 1:
            discordant_patient[pi] = True
            row = patient_rows[pi]
            k = row["timepoints"].index(t) - 1
            discordant.append(
                {
                    "patient": row["patient"],
                    "timepoint": t,
                    "responses": {
                        w: (
                            None if row["readers"][w] is None else row["readers"][w]["responses"][k]
                        )
                        for w in rs.readers
                    },
                    "adjudicated": adjudicated.get((row["patient"], t)),
                }
            )
    for row in patient_rows:
        row["adjudicated"] = {
            str(t): adjudicated[(row["patient"], t)]
            for t in row["timepoints"]
            if (row["patient"], t) in adjudicated
        }

    # --- sums and percent change
    report(progress, 0.7, "sums of diameters")
    sums, sum_groups, pct, pct_groups = [], [], [], []
    for pi, row in enumerate(patient_rows):
        for k in range(len(row["timepoints"])):
            vals = [
                _num(None if row["readers"][w] is None else row["readers"][w]["sums"][k])
                for w in rs.readers
            ]
            sums.append(vals)
            sum_groups.append(pi)
            if k > 0:
                pct.append(
                    [
                        _num(
                            None
                            if row["readers"][w] is None
                            else row["readers"][w]["pct_baseline"][k]
                        )
                        for w in rs.readers
                    ]
                )
                pct_groups.append(pi)
    sums_a = np.array(sums, float).reshape(-1, nr)
    pct_a = np.array(pct, float).reshape(-1, nr)
    sum_agree = jobs.submit(_safe,
        R.measurement_agreement, sums_a, groups=np.array(sum_groups), n_boot=n_boot,
        level=level, seed=seed,
    )  # fmt: skip
    pct_agree = jobs.submit(_safe,
        R.measurement_agreement, pct_a, groups=np.array(pct_groups), n_boot=n_boot,
        level=level, seed=seed,
    )  # fmt: skip

    # --- target selection
    report(progress, 0.8, "target selection")
    pidx = np.arange(len(plist))
    target_sel = {}
    for a, b in combinations(range(nr), 2):
        wa, wb = rs.readers[a], rs.readers[b]
        j = np.full(len(plist), np.nan)
        for pi, row in enumerate(patient_rows):
            ra, rb = row["readers"][wa], row["readers"][wb]
            if ra is None or rb is None:
                continue
            A, B = set(ra["targets"]), set(rb["targets"])
            if A | B:
                j[pi] = len(A & B) / len(A | B)
        target_sel[f"{wa}|{wb}"] = jobs.submit(_mean_ci, j, pidx, n_boot, level, seed)

    # --- per lesion and drift
    report(progress, 0.85, "per-lesion diameters and drift")
    pgroup = {p: i for i, p in enumerate(plist)}
    if source == "masks":
        lesion_rows = _mask_lesion_rows(view, lesion_run_key, rs.readers, data)
    lg = np.array([pgroup.get(k[0], -1) for k in lesion_rows["keys"]], int)
    keep = lg >= 0
    LD = lesion_rows["diameter"][keep]
    lesion_agree = jobs.submit(
        _safe, R.measurement_agreement, LD, groups=lg[keep], n_boot=n_boot, level=level, seed=seed
    )
    ltp = np.array([_num(k[2]) for k in lesion_rows["keys"]], float)[keep]
    drift = {}
    fin_tp = np.isfinite(ltp)
    drift["by_timepoint"] = _named(
        _safe(R.reader_drift, LD[fin_tp], ltp[fin_tp], alpha=alpha), rs.readers
    )
    if source == "measurements":
        sess = lesion_rows["session"][keep]
        if np.isfinite(sess).any():
            vals = np.where(np.isfinite(sess), LD, np.nan)
            drift["by_session"] = _named(
                _safe(R.reader_drift, vals, np.nan_to_num(sess, nan=0.0), alpha=alpha),
                rs.readers,
            )
        else:
            drift["by_session"] = {"value": None, "note": "no reading sessions recorded"}
    else:
        drift["by_session"] = {"value": None, "note": "sessions are those of measurements"}

    # --- per reader summaries
    bor_dist = {}
    for r, w in enumerate(rs.readers):
        counts = dict.fromkeys(R.RESPONSES, 0)
        for row in bor:
            if row[r] is not None:
                counts[row[r]] += 1
        bor_dist[w] = counts

    resp_agree = {k: f.result() for k, f in resp_agree.items()}
    sum_agree, pct_agree = sum_agree.result(), pct_agree.result()
    lesion_agree = lesion_agree.result()
    target_sel = {k: f.result() for k, f in target_sel.items()}
    jobs.close()
    results = {
        "readers": rs.readers,
        "fields": rs.fields,
        "source": source,
        "rules": asdict(rules),
        "ne": ne,
        "n_patients": len(plist),
        "n_followups": int(max_fu),
        "n_patient_timepoints": len(all_keys),
        "days_known": all(patients[p]["days"] is not None for p in plist),
        "patients": _columnar(patient_rows, rs.readers),
        "response_agreement": resp_agree,
        "discordant": discordant[:MAX_LISTED],
        "n_discordant": len(discordant),
        "n_discordant_patients": int(discordant_patient.sum()),
        "adjudications": [
            {"patient": p, "timepoint": t, **v}
            for (p, t), v in sorted(adjudicated.items(), key=str)
        ],
        "sum_agreement": sum_agree,
        "percent_change_agreement": pct_agree,
        "target_selection": target_sel,
        "lesion_agreement": {
            **lesion_agree,
            "source": source,
            "n_rows": int(keep.sum()),
            **({"lesion_run": lesion_rows["lesion_run"]} if source == "masks" else {}),
        },
        "drift": drift,
        "violations": {w: v[:MAX_LISTED] for w, v in violations.items()},
        "n_violations": {w: len(v) for w, v in violations.items()},
        "bor_distribution": bor_dist,
        "skipped": skipped[:MAX_LISTED],
        "n_skipped": len(skipped),
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
    }
    report(progress, 0.92, "writing recist_discordant")
    results["fields_written"] = _write(view, data, patients, plist, discordant_patient)
    results["run_key"] = run_key
    results["seconds"] = time.perf_counter() - t0
    config = {
        "readers": rs.readers,
        "fields": rs.fields,
        "source": source,
        "rules": asdict(rules),
        "ne": ne,
        "min_sd_days": min_sd_days,
        "confirmation_days": confirmation_days,
        "lesion_run_key": lesion_run_key if source == "masks" else None,
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
        "alpha": alpha,
    }
    RUNS.save(view, run_key, RUN_KIND, config, results)
    report(progress, 1.0, f"{len(plist)} patients, {len(discordant)} discordant calls")
    return RecistAgreementResults(results, run_key=run_key, config=config)


#: what is stored of each reader's assessment of each patient, column by column
PATIENT_COLUMNS = (
    "targets",
    "selected_by",
    "non_targets",
    "sums",
    "pct_baseline",
    "non_target",
    "responses",
    "bor",
)


def _columnar(rows: list[dict], readers: list[str]) -> dict:
    """The per-patient table column by column (a few lists per reader, not a dict per
    patient and reader: the stored run stays small and quick to write)."""
    out = {
        "patient": [r["patient"] for r in rows],
        "timepoints": [r["timepoints"] for r in rows],
        "days": [r["days"] for r in rows],
        "adjudicated": [r.get("adjudicated") or {} for r in rows],
        "readers": {},
    }
    for w in readers:
        per = [r["readers"][w] for r in rows]
        out["readers"][w] = {c: [None if a is None else a[c] for a in per] for c in PATIENT_COLUMNS}
    return out


def _named(drift, readers: list[str]):
    """reader_drift's per-reader list with reader ids instead of indices."""
    if not isinstance(drift, list):
        return drift
    out = []
    for rec in drift:
        rec = dict(rec)
        rec["reader"] = readers[rec["reader"]]
        rec["reference_readers"] = [readers[q] for q in rec["reference_readers"]]
        out.append(rec)
    return out


def _adjudications(data: dict, patients: dict) -> dict:
    """``{(patient, timepoint): {"response", "adjudicator", "reason", "at"}}`` from the
    adjudication field (the first sample of the patient-timepoint that holds one)."""
    adj = data["adjudicated"]
    if adj is None:
        return {}
    labels = adj["label"]
    out = {}
    for p, info in patients.items():
        for t, idx in info["samples"].items():
            for i in idx:
                if labels[i] is not None:
                    at = adj["read_at"][i]
                    out[(p, t)] = {
                        "response": labels[i],
                        "adjudicator": adj["reader"][i],
                        "reason": adj["reason"][i],
                        "at": at.isoformat() if hasattr(at, "isoformat") else at,
                    }
                    break
    return out


def _write(view, data: dict, patients: dict, plist: list, discordant: np.ndarray) -> list[str]:
    if DISCORDANT_FIELD in F.reader_fields(view._dataset):
        raise RecistAnalysisError(
            f"{DISCORDANT_FIELD!r} is a reader field; it is never overwritten"
        )
    ids, flags = [], []
    for pi, p in enumerate(plist):
        for idx in patients[p]["samples"].values():
            ids.extend(data["ids"][i] for i in idx)
            flags.extend([bool(discordant[pi])] * len(idx))
    return write_sample_fields(view, ids, {DISCORDANT_FIELD: np.array(flags, bool)})


# ------------------------------------------------------------------ adjudication


def adjudication_samples(dataset, patient_key: str, timepoint: int) -> list[str]:
    """Sample ids of one patient-timepoint, first slice of the first series first: the
    first one holds the adjudication's versioned history, the others a copy."""
    from fiftyone import ViewField as VF

    if not dataset.has_field(F.TIMEPOINT):
        raise RecistAnalysisError(f"dataset {dataset.name!r} has no timepoints")
    try:
        timepoint = int(timepoint)
    except (TypeError, ValueError) as e:
        raise RecistAnalysisError(f"timepoint must be an integer; got {timepoint!r}") from e
    view = dataset.match((VF(F.PATIENT_KEY) == patient_key) & (VF(F.TIMEPOINT) == timepoint))
    ids, study, series, slc = view.values(["id", F.STUDY_UID, F.SERIES_UID, F.SLICE_INDEX])
    if not ids:
        raise RecistAnalysisError(
            f"no samples of patient {patient_key!r} at timepoint {timepoint} in {dataset.name!r}"
        )
    order = sorted(
        range(len(ids)),
        key=lambda i: (str(study[i]), str(series[i]), -1 if slc[i] is None else slc[i], ids[i]),
    )
    return [ids[i] for i in order]


def check_adjudicable(response: str) -> str:
    if response not in ADJUDICABLE:
        raise RecistAnalysisError(f"response must be one of {list(ADJUDICABLE)}; got {response!r}")
    return response


def readers_calls(dataset, patient_key: str, timepoint: int, run_key: str | None = None) -> dict:
    """The readers' responses at one patient-timepoint from the newest (or the given)
    RECIST run: ``{reader: response}`` (empty when there is no run or no such row)."""
    res = (
        RecistAgreementResults.from_run(dataset, run_key)
        if run_key
        else RecistAgreementResults.newest(dataset)
    )
    if res is None:
        return {}
    try:
        row = res.patient(patient_key)
    except ResultsError:
        return {}
    if int(timepoint) not in row["timepoints"]:
        return {}
    k = row["timepoints"].index(int(timepoint)) - 1
    if k < 0:
        return {}
    return {w: (None if a is None else a["responses"][k]) for w, a in row["readers"].items()}


def copy_adjudication(dataset, sample_ids: list[str], field: str = ADJUDICATED_FIELD) -> None:
    """Copy the first sample's adjudication onto the other samples of the
    patient-timepoint (one bulk write), so every slice of it can be filtered on."""
    if field in F.reader_fields(dataset):
        raise RecistAnalysisError(f"{field!r} is a reader field; adjudications go to their own")
    first = dataset[sample_ids[0]][field]
    rest = sample_ids[1:]
    if not rest or first is None:
        return
    vals = {}
    for sid in rest:
        lab = first.copy()
        lab["history_sample_id"] = sample_ids[0]
        vals[sid] = lab
    dataset.select(rest).set_values(field, vals, key_field="id")


# ------------------------------------------------------------------ results


def _r(v, digits: int = 3):
    return None if v is None or not np.isfinite(v) else round(float(v), digits)


class RecistAgreementResults(AnalysisResults):
    """What :func:`compute_recist_agreement` found.

    Tables (:meth:`rows`): ``followups`` (per follow-up and over all: discordance rate,
    Fleiss' kappa, percent agreement with intervals), ``readers`` (best overall
    response distribution, target-rule violations, drift flags), ``pairs`` (Cohen's
    kappa over all follow-ups, target-selection Jaccard), ``discordant`` (each
    discordant patient-timepoint with every reader's call and the adjudicated one),
    ``adjudications``, ``drift`` and ``violations``.
    """

    run_kind = RUN_KIND
    sections = (
        "followups",
        "readers",
        "pairs",
        "discordant",
        "adjudications",
        "drift",
        "violations",
    )

    @property
    def readers(self) -> list[str]:
        return list(self.results.get("readers") or [])

    @property
    def patient_keys(self) -> list[str]:
        return list((self.results.get("patients") or {}).get("patient") or [])

    def patient(self, patient_key: str) -> dict:
        """One patient's row: ``{"patient", "timepoints", "days", "adjudicated",
        "readers": {reader: None | {column: value}}}`` (columns: :data:`PATIENT_COLUMNS`)."""
        table = self.results.get("patients") or {}
        try:
            i = table["patient"].index(patient_key)
        except (KeyError, ValueError) as e:
            raise ResultsError(f"no patient {patient_key!r} in RECIST run {self.run_key!r}") from e
        readers = {}
        for w, cols in table["readers"].items():
            readers[w] = None if cols["targets"][i] is None else {c: cols[c][i] for c in cols}
        return {
            "patient": patient_key,
            "timepoints": table["timepoints"][i],
            "days": table["days"][i],
            "adjudicated": table["adjudicated"][i],
            "readers": readers,
        }

    def _drift_flags(self) -> dict:
        out = {}
        for kind in ("by_timepoint", "by_session"):
            d = (self.results.get("drift") or {}).get(kind)
            if isinstance(d, list):
                out[kind] = [x["reader"] for x in d if x.get("drifting")]
        return out

    def summary(self) -> dict:
        """The small, JSON-safe summary an operator returns (the run holds everything)."""
        res = self.results
        ra = res.get("response_agreement") or {}
        followups = {
            k: {
                "discordance_rate": _r((v.get("discordance_rate") or {}).get("value")),
                "fleiss_kappa": _r((v.get("fleiss_kappa") or {}).get("value")),
                "n": v.get("n_items"),
            }
            for k, v in ra.items()
            if k != "best_overall_response" and isinstance(v, dict)
        }
        icc = ((res.get("sum_agreement") or {}).get("icc_bootstrap") or {}).get("ICC(2,1)") or {}
        return {
            "run_key": self.run_key,
            "n_patients": res.get("n_patients"),
            "n_discordant": res.get("n_discordant"),
            "n_discordant_patients": res.get("n_discordant_patients"),
            "n_adjudicated": len(res.get("adjudications") or []),
            "followups": followups,
            "bor_distribution": res.get("bor_distribution"),
            "drift_flags": self._drift_flags(),
            "sum_icc": _r(icc.get("value")),
            "n_violations": res.get("n_violations"),
            "n_skipped": res.get("n_skipped", 0),
            "fields_written": res.get("fields_written", []),
            "seconds": _r(res.get("seconds"), 2),
            "outputs": self.outputs,
        }

    def _rows(self, section: str) -> list[dict]:
        res = self.results
        ra = res.get("response_agreement") or {}
        if section == "followups":
            out = []
            for k, v in ra.items():
                if not isinstance(v, dict) or "n_items" not in v:
                    continue
                out.append(
                    {
                        "timepoint": k,
                        "n": v["n_items"],
                        "discordance_rate": v["discordance_rate"],
                        "fleiss_kappa": v["fleiss_kappa"],
                        "percent_agreement": v["percent_agreement"],
                    }
                )
            return out
        if section == "readers":
            flags = self._drift_flags()
            return [
                {
                    "reader": w,
                    **{f"bor_{c}": n for c, n in (res["bor_distribution"].get(w) or {}).items()},
                    "violations": (res.get("n_violations") or {}).get(w, 0),
                    "drifting": [k for k, v in flags.items() if w in v],
                }
                for w in self.readers
            ]
        if section == "pairs":
            kap = (ra.get("all") or {}).get("pairwise_cohen_kappa")
            out = []
            for a, b in combinations(range(len(self.readers)), 2):
                wa, wb = self.readers[a], self.readers[b]
                out.append(
                    {
                        "pair": f"{wa} vs {wb}",
                        "cohen_kappa": None if kap is None else _r(kap[a][b]),
                        "target_jaccard": (res.get("target_selection") or {}).get(f"{wa}|{wb}"),
                    }
                )
            return out
        if section == "discordant":
            return [dict(x) for x in res.get("discordant") or []]
        if section == "adjudications":
            return [dict(x) for x in res.get("adjudications") or []]
        if section == "drift":
            out = []
            for kind, d in (res.get("drift") or {}).items():
                if isinstance(d, list):
                    out += [{"by": kind, **dict(x.items())} for x in d]
            return out
        return [{"reader": w, **v} for w, vs in (res.get("violations") or {}).items() for v in vs]
