"""A read model skips, before any work, exactly the events its own chain of checks passes over
(`projections.handled`, issue 18): for every event class of the domain, applied once through
the filter and once with the filter let through everything, it acts on the same ones."""

from __future__ import annotations

import importlib
import pkgutil
from types import SimpleNamespace
from uuid import UUID

import pytest
from eventsourcing.domain import DomainEvent

import channel_domain
from projections import attainment, employees, partner_reports


def _event_classes() -> list[type]:
    for module in pkgutil.iter_modules(channel_domain.__path__):
        importlib.import_module(f"channel_domain.{module.name}")
    found, pending = set(), [DomainEvent]
    while pending:
        for kind in pending.pop().__subclasses__():
            if kind not in found:
                found.add(kind)
                pending.append(kind)
    return sorted((k for k in found if k.__module__.startswith("channel_domain")), key=lambda k: k.__qualname__)


class _Cursor:
    def __init__(self) -> None:
        self.calls = 0

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls += 1
            raise LookupError(name)  # nothing to read: the chain went on to use the event
        return call


def _acts(model, event) -> bool:
    notification = SimpleNamespace(id=7, originator_id=UUID(int=7), originator_version=1, topic="x:y")
    cursor = _Cursor()
    try:
        model.apply(cursor, [(notification, event)])
    except (AttributeError, LookupError, TypeError, KeyError):
        return True  # it read the (empty) event or wrote: it has something to do with it
    return cursor.calls > 0


EVENT_CLASSES = _event_classes()


@pytest.mark.parametrize("module, model", [(attainment, attainment.TargetAttainment),
                                           (employees, employees.EmployeeContracts),
                                           (partner_reports, partner_reports.PartnerReports)])
def test_skips_exactly_what_the_chain_passes_over(module, model, monkeypatch):
    assert len(EVENT_CLASSES) > 50
    handles = module._HANDLES
    filtered = {kind: _acts(model(), kind.__new__(kind)) for kind in EVENT_CLASSES}
    monkeypatch.setattr(module, "_HANDLES", lambda event: True)
    unfiltered = {kind: _acts(model(), kind.__new__(kind)) for kind in EVENT_CLASSES}
    assert filtered == unfiltered
    assert any(unfiltered.values()) and not all(unfiltered.values())
    assert {kind for kind, acts in unfiltered.items() if acts} == {kind for kind in EVENT_CLASSES
                                                                    if handles(kind.__new__(kind))}
