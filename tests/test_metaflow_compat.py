"""Metaflow's semantics inside flowcell tasks (issue 13), met the way a flow author meets them.

Metaflow's whole core suite runs under ``tests/compat/`` when a Metaflow checkout is
given; these tests pin each behaviour with a small flow of their own.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from flowcell.client import Run
from flowcell.importer import read_flow_file
from flowcell.runtime.runs import start_run

HELPER = '''
from metaflow import current


def where():
    """A helper module importing metaflow: it must see the running task's current."""
    return current.pathspec
'''

FLOW = '''
import os
from metaflow import FlowSpec, step, retry, catch, project
from helper import where

os.environ["METAFLOW_BRANCH"] = "feature"


@project(name="demo")
class CompatFlow(FlowSpec):

    @step
    def start(self):
        from metaflow import current
        from metaflow.exception import MetaflowException
        self.seen_pathspec = current.pathspec
        self.helper_pathspec = where()
        self.run_id_type = type(current.run_id).__name__
        self.project = (current.project_name, current.branch_name, current.project_flow_name)
        self.step_here = self._current_step
        self.items = [1, 2]
        self.is_base = issubclass(MetaflowException, Exception)
        self.next(self.each, foreach="items")

    @retry(times=2, minutes_between_retries=5)
    @step
    def each(self):
        from metaflow import current
        self.frames = [(f.step, f.var, f.num_splits, f.index, f.value) for f in self._foreach_stack]
        if current.retry_count < 1:
            raise KeyError("not yet")
        self.attempt = current.retry_count
        self.next(self.join)

    @step
    def join(self, inputs):
        from metaflow.exception import MetaflowException, UnhandledInMergeArtifactsException
        try:
            self.merge_artifacts(inputs)
        except UnhandledInMergeArtifactsException as exc:
            self.unhandled = sorted(exc.artifact_names)
        try:
            self.merge_artifacts(inputs, include=["a"], exclude=["b"])
        except MetaflowException:
            self.both_refused = True
        self.next(self.end)

    @catch(var="failure")
    @step
    def end(self):
        from metaflow.exception import ExternalCommandFailed
        raise ExternalCommandFailed("catch me!")


if __name__ == "__main__":
    CompatFlow()
'''


def test_metaflow_imports_inside_a_task_are_flowcells(runtime: Any, tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text(textwrap.dedent(HELPER))
    path = tmp_path / "compat_flow.py"
    path.write_text(FLOW)
    result = start_run(runtime, read_flow_file(path), {})
    assert result.status == "completed", result.failures
    run = Run(result.pathspec, _check_namespace=False)
    start = run["start"].task
    assert start.data.seen_pathspec == start.pathspec == start.data.helper_pathspec
    assert start.data.run_id_type == "str"
    assert start.data.project == ("demo", "test.feature", "demo.test.feature.CompatFlow")
    assert {"project:demo", "project_branch:test.feature"} <= run.system_tags, "the branch the module code set"
    assert start.data.step_here == "start" and start.data.is_base
    tasks = sorted(run["each"].tasks(), key=lambda t: t.index)
    assert [t.data.frames for t in tasks] == [[("start", "items", 2, 0, 1)], [("start", "items", 2, 1, 2)]]
    assert all(t.data.attempt == 1 for t in tasks), "retried at once, not after 5 minutes"
    join = run["join"].task.data
    assert join.unhandled == ["frames"] and join.both_refused  # attempt agrees (1 and 1)
    failure = run["end"].task.data.failure
    assert failure.type == "metaflow.exception.ExternalCommandFailed" and failure.exception == "catch me!"
    assert "catch me!" in failure.stacktrace


def test_task_exception_has_metaflows_attributes(runtime: Any, tmp_path: Path) -> None:
    path = tmp_path / "failing.py"
    path.write_text(textwrap.dedent('''
        from metaflow import FlowSpec, step

        class FailingFlow(FlowSpec):
            @step
            def start(self):
                raise KeyError("Something has gone wrong")
                self.next(self.end)

            @step
            def end(self):
                pass
    '''))
    result = start_run(runtime, read_flow_file(path), {})
    assert result.status == "failed"
    exc = Run(result.pathspec, _check_namespace=False)["start"].task.exception
    assert "KeyError" in str(exc)
    assert exc.exception == "'Something has gone wrong'" and exc.type == "builtins.KeyError"
    assert "raise KeyError" in exc.stacktrace


PARAM_FLOW = '''
import os
from metaflow import FlowSpec, step, Parameter, IncludeFile

os.environ["METAFLOW_RUN_FROM_ENV"] = "set by module code"
with open("written.txt", "w") as f:
    f.write("written by module code")


def computed(ctx):
    return f"{ctx.flow_name}/{ctx.parameter_name}"


class ParamFlow(FlowSpec):
    LIMIT = 3
    from_env = Parameter("from_env", default="literal")
    computed = Parameter("computed", default=computed)
    listed = Parameter("listed", default="a,b,c", separator=",")
    text = IncludeFile("text", default="written.txt")

    def twice(self, x):
        return 2 * x

    @step
    def start(self):
        self.doubled = self.twice(self.LIMIT)
        for name in ("from_env", "LIMIT"):
            try:
                setattr(self, name, 0)
            except AttributeError:
                self.refused = getattr(self, "refused", []) + [name]
        self.next(self.fan, num_parallel=3)

    @step
    def fan(self):
        from metaflow import current
        self.node = (current.parallel.node_index, current.parallel.num_nodes, self.input)
        self.next(self.join)

    @step
    def join(self, inputs):
        from metaflow import current
        self.nodes = sorted(i.node for i in inputs)
        self.me = current.task
        self.run_of = current.run
        self.next(self.end)

    @step
    def end(self):
        pass
'''


def test_module_code_defaults_constants_and_parallel(runtime: Any, tmp_path: Path) -> None:
    path = tmp_path / "param_flow.py"
    path.write_text(PARAM_FLOW)
    result = start_run(runtime, read_flow_file(path), {})
    assert result.status == "completed", result.failures
    run = Run(result.pathspec, _check_namespace=False)
    start = run["start"].task
    assert start.data.from_env == "set by module code", "METAFLOW_RUN_<NAME> set by the module code"
    assert start.data.computed == "ParamFlow/computed", "a default that is a function of the deploy context"
    assert start.data.listed == ["a", "b", "c"] and start.data.text == "written by module code"
    assert start.data.LIMIT == 3 and start.data.doubled == 6, "class constants and helper methods"
    assert start.data.refused == ["from_env", "LIMIT"], "parameters and constants are read-only"
    assert run["join"].task.data.nodes == [(0, 3, 0), (1, 3, 1), (2, 3, 2)]
    assert [t.index for t in run["fan"].control_tasks()] == [0]
    assert [t.metadata_dict.get("internal_task_type") for t in sorted(run["fan"], key=lambda t: t.index)] == \
        ["control", None, None], "Metaflow marks the control task"
    join = run["join"].task
    assert join.data.me.pathspec == join.pathspec and join.data.run_of.id == run.id
    assert join.data.me.parent.id == "join", "current.task reads through the Client once the task is stored"
    assert [m.value for m in start.metadata if m.type == "attempt"] == ["0"]


def test_metaflow_tutorials_run_with_their_own_defaults(runtime: Any, tmp_path: Path) -> None:
    """Metaflow's tutorials 01-playlist and 02-statistics: IncludeFile(default=script_path(...))."""
    import shutil

    import metaflow

    tutorials = Path(metaflow.__file__).parent / "tutorials"
    for folder, file, artifact in (("01-playlist", "playlist.py", "playlist"),
                                   ("02-statistics", "stats.py", "genre_stats")):
        target = tmp_path / folder
        shutil.copytree(tutorials / folder, target)
        result = start_run(runtime, read_flow_file(target / file), {})
        assert result.status == "completed", (folder, result.failures)
        assert Run(result.pathspec, _check_namespace=False)["end"].task[artifact].data, folder


def test_decorator_arguments_may_be_expressions(runtime: Any, tmp_path: Path) -> None:
    path = tmp_path / "env_flow.py"
    path.write_text(textwrap.dedent('''
        import os
        from metaflow import FlowSpec, step, environment, resources

        PREFIX = "hello"

        class EnvFlow(FlowSpec):
            @resources(memory=dict(small=1000)["small"])
            @environment(vars={"GREETING": PREFIX + " world"})
            @step
            def start(self):
                self.greeting = os.environ["GREETING"]
                self.next(self.end)

            @step
            def end(self):
                pass
    '''))
    result = start_run(runtime, read_flow_file(path), {})
    assert result.status == "completed", result.failures
    assert Run(result.pathspec, _check_namespace=False)["start"].task.data.greeting == "hello world"


def test_kernel_death_under_catch_is_failure_handled_by_catch(runtime: Any, tmp_path: Path) -> None:
    path = tmp_path / "dies.py"
    path.write_text(textwrap.dedent('''
        import os, signal
        from metaflow import FlowSpec, step, catch, retry

        class DiesFlow(FlowSpec):
            @catch(var="ex")
            @retry(times=1)
            @step
            def start(self):
                os.kill(os.getpid(), signal.SIGKILL)
                self.next(self.end)

            @step
            def end(self):
                pass
    '''))
    result = start_run(runtime, read_flow_file(path), {})
    assert result.status == "completed", result.failures
    run = Run(result.pathspec, _check_namespace=False)
    start = run["start"].task
    assert start.data.ex.type == "metaflow.plugins.catch_decorator.FailureHandledByCatch"
    assert [m.value for m in start.metadata if m.type == "attempt"] == ["0", "1", "2"], "@catch's own attempt"
    assert [s.id for s in run["start"].child_steps] == ["end"]


def test_project_system_tags_and_tag_filters_on_every_client_object(runtime: Any, tmp_path: Path) -> None:
    from flowcell.client import Flow, default_namespace, namespace

    path = tmp_path / "tagged.py"
    path.write_text(textwrap.dedent('''
        from metaflow import FlowSpec, step, project

        @project(name="tagged")
        class TaggedFlow(FlowSpec):
            @step
            def start(self):
                self.x = 1
                self.next(self.end)

            @step
            def end(self):
                pass
    '''))
    result = start_run(runtime, read_flow_file(path), {}, tags=["mine"])
    assert result.status == "completed", result.failures
    user = Run(result.pathspec, _check_namespace=False).system_tags
    branch = next(t for t in user if t.startswith("user:")).replace("user:", "project_branch:user.")
    try:
        namespace("project:tagged")
        run = Flow("TaggedFlow")[result.pathspec.split("/")[1]]
        assert {"project:tagged", branch} <= run.system_tags
        assert Flow("TaggedFlow").tags == frozenset()
        assert [s.id for s in run.steps("mine", "project:tagged")] == ["end", "start"]
        assert run.steps("not_a_tag") == [] and run["start"].tasks("not_a_tag") == []
        task = run["start"].tasks("mine")[0]
        assert "project:tagged" in task.tags and "mine" in task["x"].tags
    finally:
        default_namespace()


CONFIG_FLOW = '''
import json, os
from metaflow import FlowSpec, step, project, environment, Config, config_expr, Parameter

os.environ["METAFLOW_FLOW_CONFIG_VALUE"] = json.dumps({"given": {"size": 3, "env": {"vars": {"A": "a"}}}})


def colon_parser(text):
    key, value = text.split(":")
    return {key: value.strip()}


def default_of(ctx):
    return ctx.configs.given.size + 1


@project(name=config_expr("base").project)
class ConfigFlow(FlowSpec):
    base = Config("base", default_value={"project": "cfg_demo", "nested": {"word": "hi"}})
    silly = Config("silly", default="silly.txt", parser=colon_parser)
    given = Config("given")
    size = Parameter("size", default=config_expr("given").size, type=int)
    bigger = Parameter("bigger", default=default_of, type=int)

    @environment(vars={"WORD": base.nested.word, "SIZE": config_expr("str(given.size)")})
    @step
    def start(self):
        self.seen = (os.environ["WORD"], os.environ["SIZE"], self.size, self.bigger)
        self.nested = self.base.nested.word
        try:
            self.base["project"] = "x"
        except TypeError:
            self.immutable = True
        self.next(self.end)

    @environment(**given.env)
    @step
    def end(self):
        from metaflow import current
        self.project = current.project_name
        self.a = os.environ["A"]
'''


def test_configs_resolve_before_the_run_and_work_in_decorators(runtime: Any, tmp_path: Path) -> None:
    """Metaflow's Config: sources, parser, config_expr in decorators and defaults, immutable values."""
    (tmp_path / "silly.txt").write_text("baz: amazing")
    path = tmp_path / "config_flow.py"
    path.write_text(CONFIG_FLOW)
    result = start_run(runtime, read_flow_file(path), {})
    assert result.status == "completed", result.failures
    run = Run(result.pathspec, _check_namespace=False)
    start = run["start"].task.data
    assert start.seen == ("hi", "3", 3, 4) and start.nested == "hi" and start.immutable
    assert start.silly == {"baz": "amazing"} and start.silly.baz == "amazing"
    assert run["end"].task.data.project == "cfg_demo" and run["end"].task.data.a == "a"
    assert "project:cfg_demo" in run.system_tags, "a project name from a config tags the run too"


def test_unbounded_foreach_has_a_control_task_and_workers(runtime: Any, tmp_path: Path) -> None:
    """Metaflow's local unbounded foreach: one control task beside the workers; joins see only workers."""
    path = tmp_path / "ubf.py"
    path.write_text(textwrap.dedent('''
        from metaflow import FlowSpec, step, unbounded_test_foreach_internal

        class UbfFlow(FlowSpec):
            @step
            def start(self):
                from metaflow.plugins import InternalTestUnboundedForeachInput
                self.arr = InternalTestUnboundedForeachInput(["a", "b"])
                self.next(self.inner, foreach="arr")

            @unbounded_test_foreach_internal
            @step
            def inner(self):
                self.seen = (self.input, self.arr[self.index], self.foreach_stack()[-1][1])
                self.next(self.join)

            @step
            def join(self, inputs):
                self.seen = sorted(i.seen for i in inputs)
                self.next(self.end)

            @step
            def end(self):
                pass
    '''))
    result = start_run(runtime, read_flow_file(path), {})
    assert result.status == "completed", result.failures
    run = Run(result.pathspec, _check_namespace=False)
    assert len(run["inner"].tasks()) == 3 and len(list(run["inner"].control_tasks())) == 1
    assert next(run["inner"].control_tasks()).metadata_dict["internal_task_type"] == "control"
    assert run["join"].task.data.seen == [("a", "a", None), ("b", "b", None)], "no split count, as Metaflow"


def test_double_star_arguments_only_where_flowcell_need_not_read_them() -> None:
    import pytest

    from flowcell.errors import FlowSyntaxError
    from flowcell.model import parse_decorator

    assert parse_decorator("environment(**cfg.env)", "cell").kwargs["**"] == ["cfg.env"]
    assert parse_decorator("resources(**sizes)", "cell").source == "@resources(**sizes)"
    with pytest.raises(FlowSyntaxError, match="cannot take \\*\\*kwargs"):
        parse_decorator("retry(**opts)", "cell")


def test_parallel_workers_dying_under_catch_record_no_catch_attempt(runtime: Any, tmp_path: Path) -> None:
    """As Metaflow: @catch's own attempt is recorded on the @parallel control task, not on its workers."""
    path = tmp_path / "par_dies.py"
    path.write_text(textwrap.dedent('''
        import os, signal
        from metaflow import FlowSpec, step, catch, parallel

        class ParDiesFlow(FlowSpec):
            @step
            def start(self):
                self.next(self.fan, num_parallel=2)

            @catch(var="ex")
            @parallel
            @step
            def fan(self):
                os.kill(os.getpid(), signal.SIGKILL)
                self.next(self.join)

            @step
            def join(self, inputs):
                self.next(self.end)

            @step
            def end(self):
                pass
    '''))
    result = start_run(runtime, read_flow_file(path), {})
    assert result.status == "completed", result.failures
    tasks = sorted(Run(result.pathspec, _check_namespace=False)["fan"], key=lambda t: t.index)
    assert [[m.value for m in t.metadata if m.type == "attempt"] for t in tasks] == [["0", "1"], ["0"]]
