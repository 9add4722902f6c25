"""The plugin's operators as the SDK, the App's forms and a delegated worker reach them
(the conftest points FiftyOne's plugins directory at this repository for every test)."""

import bson
import pytest

PLUGIN = "@multireader/disagreement"


def op(name: str):
    """The registered operator ``name`` of this plugin, callable with SDK keyword arguments."""
    import fiftyone.operators as foo

    return foo.get_operator(f"{PLUGIN}/{name}")


def form(name: str, dataset, params: dict | None = None) -> dict:
    """The operator's input form as the App receives it (the Property's JSON properties)."""
    from fiftyone.operators.executor import ExecutionContext

    ctx = ExecutionContext(
        request_params={"dataset_name": dataset.name, "params": params or {}},
        operator_uri=f"{PLUGIN}/{name}",
    )
    return op(name).resolve_input(ctx).to_json()["type"]["properties"]


def run_queued(name: str, dataset) -> dict:
    """Run the one queued delegated operation of ``name`` as a worker would.

    Checks it completed with full progress and a progress label, deletes the queue
    entry, reloads ``dataset`` and returns what the operator returned.
    """
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionRunState

    svc = DelegatedOperationService()
    queued = svc.get_queued_operations(operator=f"{PLUGIN}/{name}", dataset_name=dataset.name)
    assert len(queued) == 1
    svc.execute_operation(queued[0])
    doc = svc.get(queued[0].id)
    assert doc.run_state == ExecutionRunState.COMPLETED, doc.result
    assert doc.status.progress == pytest.approx(1.0)
    assert doc.status.label
    svc.delete_operation(doc.id)
    dataset.reload()
    return doc.result.result


def raw_reader_docs(dataset):
    """Every reader field of every sample, as the BSON bytes stored in MongoDB: equal
    before and after an operator proves it did not touch a reader's label."""
    from multireader.core import fields

    names = sorted(fields.reader_fields(dataset))
    coll = dataset._sample_collection
    out = {}
    for doc in coll.find({}, dict.fromkeys(names, 1)).sort("_id", 1):
        out[str(doc["_id"])] = bson.encode({n: doc.get(n) for n in names})
    return names, out
