"""A scenario written back as a planner writes it: durations as ``"10 min"``, shares as
``"30 %"``, times of day as ``"07:30"``, so that ``ehc twin params --yaml`` prints a file
that loads as written (and the values it loads are the defaults)."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator

from twin.scenario.distributions import Minutes
from twin.scenario.schema import ClockTime, Scenario, Share


def _parser(annotation: Any) -> Any:
    """The unit parser an annotation carries (Minutes, Share, ClockTime), if any."""
    if get_origin(annotation) is Annotated:
        for meta in annotation.__metadata__:
            if isinstance(meta, BeforeValidator):
                return meta.func
    return None


_UNITS = {_parser(Minutes): lambda v: f"{v:g} min",
          _parser(Share): lambda v: f"{v * 100:g} %",
          _parser(ClockTime): lambda v: f"{int(v) // 60:02d}:{int(v) % 60:02d}"}


def render(value: Any, annotation: Any) -> Any:
    """``value`` (as the model holds it) as it is written in a scenario file."""
    if value is None:
        return None
    if get_origin(annotation) in (Union, types.UnionType):  # X | None
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    unit = _UNITS.get(_parser(annotation))
    if unit is not None:
        return unit(value)
    if isinstance(value, BaseModel):
        return {name: render(getattr(value, name), field_type(field))
                for name, field in type(value).model_fields.items()
                if getattr(value, name) is not None}
    base = get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation
    args = get_args(base)
    if isinstance(value, dict):
        kt, vt = args if len(args) == 2 else (Any, Any)
        return {render(k, kt): render(v, vt) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if get_origin(base) is tuple:
            return [render(v, a) for v, a in zip(value, args, strict=True)]
        return [render(v, args[0] if args else Any) for v in value]
    return value


def field_type(field: Any) -> Any:
    """A field's annotation with the metadata pydantic moved off it put back."""
    parsers = [m for m in field.metadata if isinstance(m, BeforeValidator)]
    return Annotated[(field.annotation, *parsers)] if parsers else field.annotation


def template(sc: Scenario | None = None) -> dict[str, Any]:
    """The scenario (the defaults when None) as a mapping a scenario file holds."""
    out = render(sc or Scenario(name="my_hospital"), Scenario)
    assert isinstance(out, dict)
    return out
