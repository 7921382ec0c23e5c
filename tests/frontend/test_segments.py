"""Graph surgery for run-time control flow (frontend/segments.py): free names of subgraphs (nested ones included),
the split into segments and control-flow nodes, and what each segment reads and hands on."""
from __future__ import annotations

import program_models as pm
from hcc.frontend import segments


def test_free_names_include_what_nested_subgraphs_read():
    outer = pm.nested_if().graph.node[0]
    then = next(a.g for a in outer.attribute if a.name == "then_branch")
    # the inner If reads c2 and, in its branches, x; the branch's own values are not free
    assert segments.free_names(then) == ["c2", "x"]
    assert segments.reads(outer) == ["c1", "c2", "x"]


def test_a_loop_body_binds_its_inputs_and_reads_the_rest():
    loop = pm.loop_run_time_trip_count().graph.node[0]
    body = next(a.g for a in loop.attribute if a.name == "body")
    assert segments.free_names(body) == ["x"]  # i, cond_in, v_in are bound; half/two are its initializers


def test_the_graph_splits_at_run_time_control_flow_only():
    graph = pm.if_on_input().graph
    steps = segments.split_steps(graph)
    assert [type(s).__name__ for s in steps] == ["Segment", "Control", "Segment"]
    assert [n.op_type for n in steps[0].nodes] == ["ReduceSum", "Greater"] and steps[1].node.name == "pick"
    needed = segments.needed_after(steps, graph)
    assert segments.segment_io(steps[0], {"zero"}, needed[0]) == (["x"], ["cond"])  # s stays inside; zero is a constant
    assert segments.segment_io(steps[2], set(), needed[2]) == (["b", "x"], ["y"])
