"""Plan before launch: per-GPU memory, FLOPs and step time of a spec's parallel configuration,
computed from the compiled spec alone (nothing is allocated), and a search for the fastest
configuration that fits a cluster.

    memory.py    model states (params, grads, optimizer) under ZeRO 0-3 and offload
    costs.py     per-unit parameters, FLOPs and activations, read off the IR
    profiles.py  device profiles (profiles/*.json) for the time estimate
    estimate.py  one configuration on one cluster: memory, FLOPs, step time, verdict
    search.py    the spec's own configuration, its alternatives, and the --auto search
    rewrite.py   write a chosen plan into the spec's parallel section
    report.py    the table and JSON output
    command.py   `nnspec plan`
"""
from nnspec.plan.estimate import Choice, Cluster, Model, PlanError, evaluate
from nnspec.plan.memory import model_states, optimizer_state_bytes
from nnspec.plan.profiles import Profile, ProfileError, load_profile
from nnspec.plan.search import auto, spec_choice

__all__ = ["Choice", "Cluster", "Model", "PlanError", "evaluate", "model_states",
           "optimizer_state_bytes", "Profile", "ProfileError", "load_profile", "auto",
           "spec_choice"]
