"""The run's state is one object per pyinfra State: two States in one process (the
Python API) do not share run id, settings, report or planning problems."""

from pyinfra.api import Config, Inventory, State
from pyinfra.context import ctx_state

from postfix_pfs import pipeline


def _state(*names: str) -> State:
    hosts = [(n, {"myhostname": f"{n}.example.net"}) for n in names]
    state = State(Inventory((hosts, {})), Config())
    for h in state.inventory:
        state.activate_host(h)  # as pyinfra does for each host it connected to
    return state


def _in(state: State, fn):
    with ctx_state.use(state):
        return fn()


def test_two_states_in_one_process_have_their_own_run():
    a, b = _state("mx1", "mx2"), _state("relay1")
    assert sorted(_in(a, pipeline.all_settings)) == ["mx1", "mx2"]
    assert sorted(_in(b, pipeline.all_settings)) == ["relay1"]
    id_a, id_b = _in(a, pipeline.run_id), _in(b, pipeline.run_id)
    assert id_a != id_b
    assert _in(a, pipeline.run_id) == id_a  # one id for the whole run
    rep_a, rep_b = _in(a, pipeline.get_report), _in(b, pipeline.get_report)
    assert rep_a is not rep_b and rep_a.run_id == id_a and rep_b.run_id == id_b
    assert _in(a, pipeline.get_report) is rep_a


def test_pyinfra_state_carries_no_attributes_of_ours():
    s = _state("mx1")
    _in(s, pipeline.run_id)
    _in(s, pipeline.all_settings)
    assert not [k for k in vars(s) if "pfs" in k]
