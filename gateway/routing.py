"""Choose an instance for a request: resolve the model to pools, then let the
balancer select among the pool's instances using the shared state."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from configuration.selectors import config_value
from gateway.registry import RegistrySnapshot, RoutableInstance, registry_snapshot
from instances.balancer.candidates import SelectionRequest
from instances.balancer.selection import NoEligibleInstance, Policy, Selection, select
from instances.balancer.state import Lease, StateStore, get_state_store
from instances.lb_settings import LBSettingsResolver


@dataclass(frozen=True, slots=True)
class Route:
    """One model to try: its pool key and the instances that serve it."""

    provider_type: str | None
    model_name: str

    @property
    def pool(self) -> str:
        return f"{self.provider_type or '*'}/{self.model_name}"


@dataclass(frozen=True, slots=True)
class Routed:
    selection: Selection
    instance: RoutableInstance
    route: Route
    policy: Policy
    pool_size: int


def resolve_model(model: str, snapshot: RegistrySnapshot) -> list[Route]:
    """A request's `model` as the ordered list of routes to try.

    1. An alias from load_balancer.model_aliases: its models in order (each
       resolved by rules 2-3, aliases do not nest).
    2. `provider/model` when provider is a known provider with that model.
    3. A bare model name: every provider serving it, as one pool.
    """
    aliases = config_value("load_balancer.model_aliases")
    names = aliases.get(model) or [model]
    routes: list[Route] = []
    for name in names:
        provider, sep, rest = name.partition("/")
        if sep and (provider, rest) in snapshot.by_pool:
            routes.append(Route(provider, rest))
        else:
            routes.append(Route(None, name))
    return routes


class Router:
    """Per-request routing context: one snapshot, one settings resolver."""

    def __init__(self, *, store: StateStore | None = None, snapshot: RegistrySnapshot | None = None) -> None:
        self.store = store or get_state_store()
        self.snapshot = snapshot or registry_snapshot()
        self._settings = LBSettingsResolver()

    def policy_for(self, route: Route, pool: tuple[RoutableInstance, ...], min_health_score: float | None) -> Policy:
        provider = route.provider_type or (pool[0].provider_type if pool else "openai")
        policy = Policy.from_settings(self._settings.get(provider, route.model_name))
        if min_health_score is not None:
            policy = replace(policy, min_health_score=min_health_score)
        return policy

    def select(
        self,
        route: Route,
        *,
        strategy: str | None = None,
        min_health_score: float | None = None,
        session_id: str | None = None,
        group_id: int | None = None,
        region: str | None = None,
        exclude: frozenset[str] = frozenset(),
        now: float | None = None,
    ) -> Routed:
        """Select one instance of the route's pool; NoEligibleInstance (with the reason) when none can serve."""
        pool = self.snapshot.pool(route.provider_type, route.model_name)
        policy = self.policy_for(route, pool, min_health_score)
        selection = select(
            [item.candidate for item in pool],
            pool=route.pool,
            request=SelectionRequest(group_id=group_id, region=region or None, exclude=exclude, session_id=session_id),
            policy=policy,
            store=self.store,
            now=time.time() if now is None else now,
            strategy=strategy,
        )
        instance = self.snapshot.by_id[selection.selected.instance_id]
        return Routed(selection, instance, route, policy, len(pool))

    def admit(
        self,
        route: Route,
        *,
        lease_seconds: Callable[[RoutableInstance], float],
        exclude: frozenset[str] = frozenset(),
        **select: Any,
    ) -> tuple[Routed, Lease]:
        """Select, then take the instance's in-flight lease (store.begin) for `lease_seconds(instance)`;
        an instance refusing at begin (at capacity, breaker, rate limit: another process got there
        first) is excluded and another one selected. NoEligibleInstance when none is left. The
        gateway's attempts and select-instance's leases both come here."""
        refused: set[str] = set()
        while True:
            routed = self.select(route, exclude=exclude | refused, **select)
            item = routed.instance
            seconds = lease_seconds(item)
            admission = self.store.begin(
                item.candidate, pool=route.pool, now=time.time(), breaker=routed.policy.breaker, lease_seconds=seconds
            )
            if admission.lease is not None:
                return routed, admission.lease
            refused.add(item.instance_id)


__all__ = ["NoEligibleInstance", "Route", "Routed", "Router", "resolve_model"]
