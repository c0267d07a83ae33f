"""Per-task fingerprints (issue 14 item 1): the code half from the source, the read set from real kernels."""

from __future__ import annotations

from typing import Any

from conftest import make_flow, run
from flowcell.fingerprint import code_components, module_digests, normalized_digest
from flowcell.runtime.runs import start_resume
from flowcell.store.fingerprints import for_run, load
from flowcell.store.metadata import MetadataStore


def records(result: Any) -> dict[str, list[dict[str, Any]]]:
    """Step -> the records of its tasks (in task order), read back from the store."""
    meta = MetadataStore(result.root)
    try:
        found = for_run(meta, result.flow, result.run_number)
        out: dict[str, list[dict[str, Any]]] = {}
        for task in meta.tasks(result.flow, result.run_number):
            if task.task_id in found:
                out.setdefault(task.step, []).append(found[task.task_id].record)
        return out
    finally:
        meta.close()


def test_step_source_is_normalised_with_ast() -> None:
    plain = normalized_digest("x = 1\nself.next(self.end)\n")
    assert normalized_digest('"""Docs."""\n# a comment\nx   =   1   # why\n\nself.next( self.end )\n') == plain
    assert normalized_digest("x = 2\nself.next(self.end)\n") != plain


def test_module_code_digests_are_named_by_what_they_define() -> None:
    first = module_digests(("import math\nX = 1\ndef clean(t):\n    return t.strip()\nclass Model:\n    pass\n"
                            "alpha = Parameter('alpha', default=0.5)\nprint('hi')\n",))
    assert set(first) == {"import math", "X", "def clean", "class Model", "stmt 6"}  # parameters are reads
    second = module_digests(("import math\nX = 1\ndef clean(t):\n    return t.strip().lower()\nclass Model:\n"
                             "    pass\nalpha = Parameter('alpha', default=0.9)\nprint('hi')\n",))
    assert [k for k in first if first[k] != second[k]] == ["def clean"]


def test_code_digest_covers_decorators_and_module_code_not_parameter_defaults() -> None:
    base = make_flow("%%flow F\nfrom flowcell import Parameter\na = Parameter('a', default=1)\n"
                     "%%step start\nself.next(self.end)\n%%step end\npass")
    same = make_flow("%%flow F\nfrom flowcell import Parameter\na = Parameter('a', default=2)\n"
                     "%%step start\nself.next(self.end)   # comment\n%%step end\npass")
    decorated = make_flow("%%flow F\nfrom flowcell import Parameter\na = Parameter('a', default=1)\n"
                          "%%step start @retry(times=2)\nself.next(self.end)\n%%step end\npass")
    assert code_components(base, "start").code == code_components(same, "start").code
    assert code_components(base, "start").code != code_components(decorated, "start").code
    assert code_components(decorated, "start").decorators == ("@retry(times=2)",)


FLOW = """
%%flow TestFlow
from flowcell import Parameter
alpha = Parameter("alpha", default=0.5)
beta = Parameter("beta", default=1)
%%step start
self.data = [1, 2, 3]
self.next(self.load)
%%step load
self.rows = [x * self.beta for x in self.data]
self.next(self.train)
%%step train
self.model = sum(self.rows) * self.alpha
self.unused = "present" if "nothing_here" in self else "absent"
self.next(self.end)
%%step end
pass
"""


def test_each_task_records_what_it_read_with_addresses(runtime: Any) -> None:
    result, r, _ = run(runtime, FLOW, {"alpha": 0.3})
    recs = records(result)
    assert set(recs) == {"start", "load", "train", "end"}
    load_rec, train_rec = recs["load"][0], recs["train"][0]
    # Only what the step touched: load never reads alpha, train never reads beta.
    assert set(load_rec["reads"]) == {"data", "beta"}
    assert set(train_rec["reads"]) == {"rows", "alpha", "nothing_here"}
    assert train_rec["reads"]["nothing_here"] is None  # looked for and absent: part of what it saw
    assert train_rec["reads"]["rows"] == r["load"].task["rows"].sha
    assert train_rec["params"] == {"alpha": "0.3"}
    assert sorted(train_rec["written"]) == ["model", "unused"]
    assert recs["start"][0]["reads"] == {} and recs["end"][0]["reads"] == {}
    assert train_rec["python"] and train_rec["step_norm"] and train_rec["join_reads"] is None
    # The raw cell text is kept, for "cell changed (+2 -1 lines)" and --diff.
    from flowcell.store.fingerprints import source_text

    meta = MetadataStore(result.root)
    try:
        assert "sum(self.rows)" in (source_text(meta, train_rec["step_source"]) or "")
        assert 'alpha = Parameter("alpha", default=0.5)' in (source_text(meta, train_rec["module_source"]) or "")
    finally:
        meta.close()


def test_foreach_records_items_and_input_counts_as_the_item(runtime: Any) -> None:
    result, _, _ = run(runtime, """
%%step start
self.items = ["a", "b", "c"]
self.next(self.each, foreach="items")
%%step each
self.out = self.input.upper()
self.next(self.join)
%%step join(inputs)
self.outs = [i.out for i in inputs]
self.next(self.end)
%%step end
pass
""")
    recs = records(result)
    splits = recs["each"]
    assert [s["split"][0]["index"] for s in splits] == [0, 1, 2]
    items = [s["split"][0]["item"] for s in splits]
    assert len(set(items)) == 3 and all(items)
    assert all("items" not in s["reads"] for s in splits)  # self.input read the item, not the list
    join = recs["join"][0]
    assert [set(j) for j in join["join_reads"]] == [{"out"}] * 3
    assert join["read_all"] is False


def test_merge_artifacts_reads_every_input(runtime: Any) -> None:
    result, _, _ = run(runtime, """
%%step start
self.next(self.a, self.b)
%%step a
self.x = 1
self.next(self.join)
%%step b
self.y = 2
self.next(self.join)
%%step join(inputs)
self.merge_artifacts(inputs)
self.next(self.end)
%%step end
pass
""")
    join = records(result)["join"][0]
    assert join["read_all"] is True
    assert [set(j) for j in join["join_reads"]] == [{"x"}, {"y"}]
    assert sorted(join["written"]) == ["x", "y"]


def test_distributions_of_imported_modules_are_recorded(runtime: Any) -> None:
    import importlib.metadata as md

    result, _, _ = run(runtime, """
%%flow TestFlow
import json
%%step start
import tqdm
self.v = tqdm.__version__
self.next(self.end)
%%step end
pass
""")
    recs = records(result)
    assert recs["start"][0]["distributions"].get("tqdm") == md.version("tqdm")
    assert "json" not in str(recs["start"][0]["distributions"])  # the standard library is not a distribution


def test_resume_records_executed_tasks_and_clones_point_at_their_origin(runtime: Any) -> None:
    text = "%%step start\nself.x = 1\nself.next(self.mid)\n%%step mid\nself.y = self.x + 1\nself.next(self.end)\n" \
           "%%step end\npass"
    first, _, _ = run(runtime, text)
    resumed = start_resume(runtime, make_flow(text), "mid")
    meta = MetadataStore(resumed.root)
    try:
        tasks = {t.step: t for t in meta.tasks(resumed.flow, resumed.run_number)}
        cloned = load(meta, resumed.flow, resumed.run_number, tasks["start"].task_id)
        assert cloned is not None and cloned.run_number == first.run_number  # the record of the task that ran
        ran = load(meta, resumed.flow, resumed.run_number, tasks["mid"].task_id)
        assert ran is not None and ran.run_number == resumed.run_number and set(ran.record["reads"]) == {"x"}
    finally:
        meta.close()


def test_reading_the_foreach_list_itself_after_input_counts(runtime: Any) -> None:
    result, _, _ = run(runtime, """
%%step start
self.items = [1, 2]
self.next(self.each, foreach="items")
%%step each
first = self.input
self.size = len(self.items) + first
self.next(self.join)
%%step join(inputs)
self.next(self.end)
%%step end
pass
""")
    assert all("items" in s["reads"] for s in records(result)["each"])
