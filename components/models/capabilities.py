"""What a family's model can do beyond ``sample``: capabilities as protocols.

A family declares its capabilities in its :class:`~components.models.family.Family` record; the CLI and the
registry read the record instead of probing models with ``hasattr``, and the family contract test checks that
a built model really implements every protocol its record declares (and none it does not).
Torch-free: annotations are strings.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Inpaints(Protocol):
    """Fills any masked region: ``known`` is 1 where a pixel is given, 0 where it is to be generated."""

    def inpaint(self, x: Any, known: Any, *, generator: Any = None, **options: Any) -> Any: ...


@runtime_checkable
class Completes(Protocol):
    """Completes images in raster order from their first ``rows_given`` rows (autoregressive models)."""

    def complete(self, x_top: Any, rows_given: int, *, generator: Any = None, **options: Any) -> Any: ...


#: every capability a family can declare, by the name the CLI and the model card use
CAPABILITIES: dict[str, type] = {"inpaint": Inpaints, "complete": Completes}
