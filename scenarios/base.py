"""What every scenario section shares: strictness, names, and tagged unions.

Kept apart from :mod:`ribbed.scenarios.schema` so that sections defined in other modules (the
guidance sections) are built the same way without importing the whole schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Union, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, GetPydanticSchema

__all__ = ["Fraction", "MAX_COUNT", "MAX_NEURONS", "MAX_SEED", "Name", "Strict", "tagged_union"]

#: Agent ids are 32-bit: the largest network (all populations together).
MAX_NEURONS = 2**31 - 1
#: The largest tick count, period or other count a scenario may hold: the message log's header
#: stores the scenario in msgpack, whose integers are 64-bit, and numpy counts ticks in int64.
MAX_COUNT = 2**63 - 1
#: The largest root seed: numpy's SeedSequence takes any, the log's header stores it as msgpack's
#: unsigned 64-bit integer.
MAX_SEED = 2**64 - 1

Name = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$",
        max_length=64,
        description="A name: letters, digits, '_', '-', '.'; starting with a letter or '_'.",
    ),
]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class Strict(BaseModel):
    """Base of every section: unknown keys are errors, values are checked on assignment,
    nothing is coerced (``size: "4"`` or ``size: true`` is an error, not 4 or 1), and no
    number is infinite or NaN."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


def tagged_union(tag: str, *members: type[BaseModel]) -> Any:
    """A section that is one of ``members``, chosen by its ``tag`` key, which may also be written
    as just the tag (``connectivity: all_to_all``).

    The JSON Schema admits that shorthand too, so an editor checking a file against
    ``ribbed schema`` accepts exactly what the loader accepts (the built-ins use it).
    """
    tags = [get_args(member.model_fields[tag].annotation)[0] for member in members]

    def expand(value: Any) -> Any:
        return {tag: value} if isinstance(value, str) else value

    def document(schema: Any, handler: Any) -> dict[str, Any]:
        return {"anyOf": [{"type": "string", "enum": tags}, handler(schema)]}

    return Annotated[
        Union[members],  # type: ignore[valid-type]
        Field(discriminator=tag),
        BeforeValidator(expand),
        GetPydanticSchema(get_pydantic_json_schema=document),
    ]
