"""Typed analysis results (issue 13): what an analysis returns is the object its stored
run gives back, it names what it wrote, and operators return its summary."""

from __future__ import annotations

import json

import pytest
from helpers_plugin import op

from multireader.analyses import agreement as analysis
from multireader.core import runs
from multireader.core.results import AnalysisResults, ResultsError, results_class
from multireader.errors import MultireaderError


def _json(x):
    return json.loads(json.dumps(x))


def test_returned_results_equal_the_stored_run(demo_clone):
    res = analysis.compute_agreement(demo_clone, kinds=["classification"], n_boot=0)
    assert isinstance(res, analysis.AgreementResults)
    assert (res.run_key, res.kind) == ("agreement", "agreement")
    # the plain-dict reading still works
    assert res["kinds"]["classification"]["readers"] == res.readers
    assert res.get("run_key") == "agreement" and "kinds" in res
    assert res.get("nothing") is None
    back = AnalysisResults.from_run(demo_clone, "agreement")
    assert type(back) is analysis.AgreementResults and results_class("agreement") is type(back)
    assert back.summary() == _json(res.summary())
    assert back.rows("pairwise") == _json(res.rows("pairwise"))
    assert back.config["n_boot"] == 0 and back.created_at
    assert back.outputs == {
        "fields": res["fields_written"],
        "runs": ["agreement"],
        "saved_views": [],
    }
    assert "disagreement" in back.outputs["fields"]
    json.dumps(back.to_json())
    stored = runs.load(demo_clone, "agreement")["results"]
    assert back.results == stored
    with pytest.raises(ResultsError, match="no table 'nope'"):
        back.rows("nope")
    with pytest.raises(MultireaderError, match="not 'multireader.consensus'"):
        analysis.ConsensusResults.from_run(demo_clone, "agreement")


def test_consensus_results_and_the_operator_summary(demo_clone):
    out = op("compute_consensus")(demo_clone, method="majority", run_key="cm")
    res = analysis.ConsensusResults.from_run(demo_clone, "cm")
    assert out == _json(res.summary())
    assert out["outputs"] == {"fields": ["consensus_majority"], "runs": ["cm"], "saved_views": []}
    assert res.method == "majority" and res.label_kind == "classification"
    assert {r["parameter"] for r in res.rows("params")} == set(res.params)
    assert [f["reader"] for f in res.rows("flags")] == [f["reader"] for f in res["flags"]]


def test_the_agreement_operator_returns_the_summary(demo_clone):
    out = op("compute_agreement")(demo_clone, kinds=["classification"], n_boot=0, run_key="ag")
    res = AnalysisResults.from_run(demo_clone, "ag")
    assert out == _json(res.summary())
    assert out["statistics"] == res.rows("statistics") and out["outputs"]["runs"] == ["ag"]
