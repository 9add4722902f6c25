"""What an agent relies on without the App: risk levels, skills, and targets from params.

The MCP server itself is driven in ``tests/test_mcp.py``; these checks are fast.
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = "@multireader/disagreement"
#: the `fiftyone` command of this interpreter's environment
FIFTYONE_CLI = os.path.join(os.path.dirname(sys.executable), "fiftyone")

#: operators that delete, rename or rewrite what is already there: never LOW
DESTRUCTIVE = {"revise_label", "delete_training_set", "manage_runs", "delete_study"}
#: operators that write something other than new analysis fields (files, tags,
#: imported labels that replace a re-imported source, the label schema): not LOW either
NOT_LOW = DESTRUCTIVE | {
    "import_dicom",
    "import_reader_labels",
    "import_predictions",
    "declare_label_schema",
    "flag_for_reread",
    "export_audit_log",
    "export_audit_report",
    "import_measurements",
    "adjudicate_response",
}
#: reads, and computations that only add fields and runs of their own: LOW
LOW = {
    "render_window_presets",
    "compute_agreement",
    "compute_consensus",
    "compute_lesion_agreement",
    "compute_recist_agreement",
    "compute_visualization",
    "compute_uniqueness",
    "compute_embeddings",
    "compute_quality_metrics",
    "find_disagreement_clusters",
    "fit_label_model",
    "compute_mistakenness",
    "evaluate_model",
    "zero_shot_classify",
    "freeze_training_set",
    "verify_training_set",
    "diff_training_sets",
    "verify_audit_log",
}


def _declared(kind):
    with open(os.path.join(ROOT, "fiftyone.yml")) as f:
        text = f.read()
    block = re.search(rf"^{kind}:\s*\n((?:\s+- .*\n)+)", text, re.M)
    return re.findall(r"- ([\w-]+)", block.group(1)) if block else []


def _cli_env():
    return {
        **os.environ,
        "FIFTYONE_PLUGINS_DIR": ROOT,
        "FIFTYONE_DATABASE_VALIDATION": "false",
        "FIFTYONE_DO_NOT_TRACK": "true",
    }


def test_every_operator_declares_a_risk_level():
    import fiftyone.operators as foo
    from fiftyone.operators.types import RiskLevel

    from operators import OPERATORS

    levels = {}
    for cls in OPERATORS:
        config = cls().config
        # OperatorConfig defaults to DANGEROUS when none is given: each must choose
        assert config.risk_level is not RiskLevel.DANGEROUS, config.name
        levels[config.name] = config.risk_level
    for name in NOT_LOW & set(levels):
        assert levels[name] is not RiskLevel.LOW, name
    for name in DESTRUCTIVE:
        assert levels[name] in (RiskLevel.HIGH, RiskLevel.DANGEROUS), name
    for name in LOW & set(levels):
        assert levels[name] is RiskLevel.LOW, name
    # the registered operators (what the MCP server lists) say the same
    for name in _declared("operators"):
        registered = foo.get_operator(f"{PLUGIN}/{name}")
        assert registered.risk_level is levels[name], name
        assert registered.config.to_json()["risk_level"] == levels[name].value


def test_skills_are_declared_and_listed_by_the_cli():
    declared = _declared("skills")
    assert len(declared) >= 5
    for name in declared:
        path = os.path.join(ROOT, "skills", name, "SKILL.md")
        with open(path) as f:
            text = f.read()
        front = re.match(r"^---\n(.*?)\n---\n", text, re.S)
        assert front, path
        assert re.search(rf"^name: {re.escape(name)}$", front.group(1), re.M), path
        assert re.search(r"^description: \S", front.group(1), re.M), path
        # every operator a skill names exists
        for op_name in re.findall(r"disagreement/(\w+)", text):
            assert op_name in _declared("operators"), (name, op_name)
    out = subprocess.run(
        [FIFTYONE_CLI, "skills", "list", "--names-only"],
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    listed = re.findall(r"^\s{4}(\S+)$", out.split(PLUGIN, 1)[1], re.M)
    assert sorted(listed) == sorted(declared), out


def _ctx(dataset, params):
    from fiftyone.operators.executor import ExecutionContext

    return ExecutionContext(request_params={"dataset_name": dataset.name, "params": params})


def _form_error(op_name, dataset, params):
    """The executor's validation of the form, as the MCP server meets it."""
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ValidationContext

    operator = foo.get_operator(f"{PLUGIN}/{op_name}")
    ctx = _ctx(dataset, params)
    v = ValidationContext(ctx, operator.resolve_input(ctx), operator)
    return [(e.path.lstrip("."), e.reason) for e in v.errors]


def test_saved_view_and_tag_targets_from_params_alone(dataset):
    import fiftyone as fo

    from multireader.errors import MultireaderError
    from operators import _inputs as I

    dataset.add_samples([fo.Sample(filepath=f"/tmp/x{i}.png") for i in range(5)])
    ids = dataset.values("id")
    dataset.select(ids[:2]).tag_samples("hard")
    dataset.save_view("first3", dataset.limit(3))

    assert len(I.target_view(_ctx(dataset, {"target": "SAVED_VIEW", "saved_view": "first3"}))) == 3
    # a saved view or tag alone implies the target
    assert len(I.target_view(_ctx(dataset, {"saved_view": "first3"}))) == 3
    assert len(I.target_view(_ctx(dataset, {"tag": "hard"}))) == 2
    assert len(I.target_view(_ctx(dataset, {"target": "DATASET"}))) == 5
    # no App view: the current view is the whole dataset
    assert len(I.analysis_target_view(_ctx(dataset, {}))) == 5

    cases = [
        ({"target": "SAVED_VIEW"}, "saved_view", "needs saved_view"),
        ({"saved_view": "nope"}, "saved_view", "its saved views: first3"),
        ({"tag": "nope"}, "tag", "its sample tags: hard"),
        ({"target": "DATASET", "tag": "hard"}, "tag", "only used with target 'TAG'"),
        ({"target": "SELECTED"}, "target", "must be one of"),
    ]
    for params, name, words in cases:
        with pytest.raises(MultireaderError, match=f"parameter {name}: .*{re.escape(words)}"):
            I.target_view(_ctx(dataset, params))
        errors = _form_error("render_window_presets", dataset, params)
        assert errors and errors[0][0] == name, (params, errors)
        assert f"parameter {name}" in errors[0][1] and words in errors[0][1], errors
    assert _form_error("render_window_presets", dataset, {"saved_view": "first3"}) == []


def test_flag_for_reread_without_a_selection_refuses_clearly(dataset):
    import fiftyone as fo

    dataset.add_samples([fo.Sample(filepath=f"/tmp/y{i}.png") for i in range(2)])
    errors = _form_error("flag_for_reread", dataset, {})
    assert errors and errors[0][0] == "sample_ids", errors
    assert "select samples in the App" in errors[0][1]
    errors = _form_error("flag_for_reread", dataset, {"sample_ids": ["000000000000000000000000"]})
    assert errors and errors[0][0] == "sample_ids" and "not on dataset" in errors[0][1], errors
    assert _form_error("flag_for_reread", dataset, {"sample_ids": dataset.values("id")}) == []


def test_revise_label_names_an_unknown_sample(dataset):
    import fiftyone as fo

    dataset.add_sample(fo.Sample(filepath="/tmp/z.png"))
    errors = _form_error("revise_label", dataset, {"sample_id": "000000000000000000000000"})
    assert errors and errors[0][0] == "sample_id" and "no sample" in errors[0][1], errors
