"""Load balancing: which instance takes a request, and the shared state behind the choice.

Pure decision code (no ORM, no clock of its own):
    candidates.py   Candidate, SelectionRequest, filter_candidates and the reasons for leaving one out
    strategies.py   the seven strategies, each returning a Choice with its reason
    latency.py      the peak-EWMA latency estimate
    breaker.py      the circuit breaker state machine and the max-ejection guard
    affinity.py     rendezvous hashing for session affinity
    ratelimit.py    GCRA for requests and tokens per minute
Shared state and its composition:
    state.py        StateStore (Redis or in process) and get_state_store()
    selection.py    select(): snapshot, filter, affinity or strategy, in one call
"""
