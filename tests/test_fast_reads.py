"""The database-side reads of :mod:`multireader.core.collect` against a reference built on
FiftyOne's own ``values()``, on random data in the real database with every awkward case:
labels outside the classes, missing and null reads, samples without a patient key,
sessions whose names sort differently from their time order, read times stored as text,
a score that is a boolean, ids ending in zero bytes, views that filter, sort and skip.
"""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from multireader.core import collect as C

CLASSES = ["benign", "probably_benign", "suspicious", "malignant"]
N = 700


def _reference(view, reader_set, classes, *, scores=True, sessions=True):
    """What categorical_reads returns, recomputed from values() with plain Python."""
    paths = ["id"]
    for f in reader_set.fields:
        paths += [f"{f}.label", f"{f}.score", f"{f}.session", f"{f}.read_at"]
    paths.append("patient_key")
    cols = dict(zip(paths, view.values(paths), strict=True))
    n, r = len(cols["id"]), len(reader_set.fields)
    codes = np.full((n, r), -1)
    score = np.full((n, r), np.nan)
    names = np.empty((n, r), dtype=object)
    times = np.full((n, r), np.nan)
    unknown = []
    for j, f in enumerate(reader_set.fields):
        for i, v in enumerate(cols[f"{f}.label"]):
            if v in classes:
                codes[i, j] = classes.index(v)
            elif v is not None:
                unknown.append((j, i, cols["id"][i], v))
            s = cols[f"{f}.score"][i]
            score[i, j] = float(s) if isinstance(s, (int, float)) else np.nan
            names[i, j] = cols[f"{f}.session"][i]
            t = pd.to_datetime(cols[f"{f}.read_at"][i], utc=True, errors="coerce")
            times[i, j] = np.nan if pd.isna(t) else t.value / 1e9
    groups, seen = [], {}
    for i, p in enumerate(cols["patient_key"]):
        groups.append(seen.setdefault(p if p is not None else ("none", i), len(seen)))
    return cols["id"], codes, score, names, times, np.array(groups), sorted(unknown)


@pytest.fixture(scope="module")
def study():
    import uuid

    import fiftyone as fo

    from multireader.core import fields, schema

    ds = fo.Dataset(f"test-mr-fast-{uuid.uuid4().hex[:8]}")
    rng = np.random.default_rng(7)
    ds.add_samples(
        [
            fo.Sample(
                filepath=f"/x/{i}.png",
                patient_key=None if i % 37 == 0 else f"pt-{rng.integers(0, 60)}",
                site=str(rng.choice(["north", "south", "east"])),
                age=None if i % 11 == 0 else float(rng.normal(60, 10)),
            )
            for i in range(N)
        ]
    )
    schema.declare_label_schema(ds, CLASSES, ordered=True)
    base = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    for r in range(3):
        labels = []
        for i in range(N):
            u = rng.random()
            if u < 0.06:
                labels.append(None)
                continue
            label = str(rng.choice(CLASSES)) if u > 0.1 else "not-a-class"
            session = int(rng.integers(0, 12))
            labels.append(
                fo.Classification(
                    label=label,
                    score=True if i % 97 == 0 else float(rng.integers(1, 6)),
                    # S10 is read before S2: the order is by time, not by name
                    session=f"S{12 - session}",
                    read_at=base
                    + dt.timedelta(days=3 * session, seconds=int(rng.integers(0, 9e4))),
                )
            )
        field = fields.reader_field(f"R{r + 1}")
        ds.set_values(field, labels, validate=False)
        fields.mark_reader_field(ds, field, f"R{r + 1}", "classification")
    ds.add_dynamic_sample_fields()
    yield ds
    ds.delete()


def _views(ds):
    from fiftyone import ViewField as VF

    return [
        ds.view(),
        ds.match(VF("site") == "north"),
        ds.sort_by("age", reverse=True).skip(17),
        ds.take(50, seed=3),
        ds.match(VF("site") == "nowhere"),
    ]


def test_categorical_reads_equal_a_values_reference(study):
    rs = C.select_readers(study, "classification")
    for view in _views(study):
        ids, codes, score, names, times, groups, unknown = _reference(view, rs, CLASSES)
        got = C.categorical_reads(view, rs)
        assert got.item_ids == ids
        assert np.array_equal(got.codes, codes)
        assert np.array_equal(got.scores, score, equal_nan=True)
        listed = sorted(
            (rs.fields.index(u["field"]), ids.index(u["sample_id"]), u["sample_id"], u["label"])
            for u in got.unknown
        )
        assert listed == unknown
        if len(ids):
            assert np.array_equal(got.groups, groups)
            # sessions: one order by first read time, the same for all readers
            read = codes >= 0
            first = {}
            for nm, t in zip(names[read], times[read], strict=True):
                first[nm] = min(first.get(nm, np.inf), t)
            order = sorted(first, key=lambda s: (first[s], s))
            assert got.session_names == order
            want = np.where(read, -1, -1)
            want[read] = [order.index(nm) for nm in names[read]]
            assert np.array_equal(got.sessions, want)


def test_the_variants_a_panel_asks_for(study):
    rs = C.select_readers(study, "classification")
    for view in _views(study):
        full = C.categorical_reads(view, rs)
        slim = C.categorical_reads(
            view,
            rs,
            scores=False,
            sessions=False,
            ids=False,
            groups=False,
            coded=["reader_r1.label"],
        )
        assert slim.item_ids == [] and slim.groups is None
        assert np.array_equal(slim.codes, full.codes)
        assert np.array_equal(slim.extra_codes["reader_r1.label"], full.codes[:, 0])
        assert np.isnan(slim.scores).all() and (slim.sessions == -1).all()
        names = C.categorical_reads(view, rs, sessions="names", ids=False)
        assert names.session_names == sorted(names.session_names, key=C._natural_key)


def test_a_new_session_value_is_seen_on_the_next_read(study):
    import fiftyone as fo

    rs = C.select_readers(study, "classification")
    before = C.categorical_reads(study, rs, sessions="names")
    sample = study.first()
    old = sample["reader_r1"]
    sample["reader_r1"] = fo.Classification(label="benign", session="S99")
    sample.save()
    try:
        after = C.categorical_reads(study, rs, sessions="names")
        assert "S99" in after.session_names and "S99" not in before.session_names
        assert after.session_names[after.sessions[0, 0]] == "S99"
    finally:
        sample["reader_r1"] = old
        sample.save()


def test_read_times_stored_as_text_take_the_general_read(study):
    rs = C.select_readers(study, "classification")
    clone = study.clone()
    try:
        sid = clone.first().id
        clone._sample_collection.update_one(
            {"_id": clone.first()._id}, {"$set": {"reader_r2.read_at": "2026-03-01T10:00:00"}}
        )
        got = C.categorical_reads(clone, rs)
        _, codes, _, names, times, _, _ = _reference(clone, rs, CLASSES)
        assert got.item_ids[0] == sid
        assert np.array_equal(got.codes, codes)
        assert got.session_names  # ordered with the text time parsed, as before
    finally:
        clone.delete()


def test_read_columns_equal_values(study):
    paths = ["site", "age", "patient_key", "reader_r1.label", "reader_r2.score", "filepath"]
    for view in _views(study):
        want = dict(zip(paths, view.values(paths), strict=True))
        got = C.read_columns(view, paths)
        for p in paths:
            assert [type(v) for v in got[p]] == [type(v) for v in want[p]], p
            assert got[p] == want[p] or np.array_equal(
                np.array(got[p], float), np.array(want[p], float), equal_nan=True
            ), p


def test_fixed_layout_parse_of_many_documents(study):
    """Batches of thousands of documents (array keys of 1 to 5 digits) parse in place."""
    view = study.view()
    out = C._fixed_read(view, [("_id", "oid", None), ("a", "i4", {"$literal": 7})])
    assert (out["a"] == 7).all() and len(out["a"]) == N
    hexed = out["_id"].tobytes().hex()
    assert [hexed[i : i + 24] for i in range(0, len(hexed), 24)] == view.values("id")
