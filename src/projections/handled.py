"""Which events a read model has anything to do with, told once per event class.

Most of a log is sales; a read model with nothing to do for a sale still asked each one its
chain of `isinstance` checks (about 0.13 µs each on these event classes) and worked out its id
first. `Handles` answers from a memo of each class seen (a class's instances all answer the same:
the event classes' metaclass does not override `isinstance`), with the very checks of the
model's own chain, so it skips exactly the events the chain passed over."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


class Handles:
    def __init__(self, kinds: tuple[type, ...], *, exact: Collection[type] = (), names: Collection[str] = ()) -> None:
        self.kinds = kinds  # matched as `isinstance(event, kind)` matches
        self.exact = frozenset(exact)  # matched as `type(event) in …` matches
        self.names = frozenset(names)  # matched by the class's name, as `type(event).__name__ in …`
        self._seen: dict[type, bool] = {}

    def __call__(self, event: Any) -> bool:
        kind = type(event)
        found = self._seen.get(kind)
        if found is None:
            found = self._seen[kind] = (isinstance(event, self.kinds) or kind in self.exact
                                        or kind.__name__ in self.names)
        return found
