"""Records: the ``@dataclass`` classes of a program (LANGUAGE.md section 3).

A :class:`RecordType` is made when its ``RecordDef`` runs; calling it makes a
:class:`Record` (keyword or positional field values, defaults for the rest), and a hole
typed with it (``[P: Person]``) decodes compact JSON valid against :attr:`RecordType.schema`
(every field required, in order, nothing else) and binds the record read back from it.
A record's fields are readable (``p.name``); it compares, prints and dumps to JSON as a
dataclass does. Field types are ``str``, ``int``, ``float``, ``bool``, ``list[T]`` and
records defined before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

from lmq.runtime.interpreter.namespaces import Namespace, ProgramCallable, bind_call

SCALARS = {"str": ("string", str), "int": ("integer", int), "float": ("number", float),
           "bool": ("boolean", bool)}
# A resolved field type: a scalar's name, ("list", item type) or a record type.
Kind = Union[str, tuple, "RecordType"]


class RecordType(ProgramCallable):
    def __init__(self, name: str, fields: tuple[tuple[str, Kind], ...],
                 defaults: Mapping[str, Any]) -> None:
        self.name = name
        self.fields = fields
        self.defaults = dict(defaults)
        self.schema = _schema(self)

    def __call__(self, *args: Any, **kwargs: Any) -> Record:
        values = bind_call(self.name, [name for name, _ in self.fields], args, kwargs,
                           self.defaults, "field")
        return Record(self, values)

    def from_json(self, data: Any) -> Record:
        """The record a decoded JSON object stands for (nested records included)."""
        return Record(self, {name: _read(kind, data[name]) for name, kind in self.fields})

    def __repr__(self) -> str:
        return f"<record type {self.name}>"


class Record(Namespace):
    kind = "record"

    def __init__(self, record_type: RecordType, values: dict[str, Any]) -> None:
        super().__init__(record_type.name, values)
        self.type = record_type

    def __getattr__(self, name: str) -> Any:  # for the host: result["P"].name
        fields = self.__dict__.get("attributes", {})
        if name in fields:
            return fields[name]
        raise AttributeError(name)

    def as_dict(self) -> dict[str, Any]:
        return {name: _plain(value) for name, value in self.attributes.items()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and other.type is self.type and \
            other.attributes == self.attributes

    __hash__ = None  # type: ignore[assignment]  # mutable fields, as a plain dataclass

    def __repr__(self) -> str:
        inside = ", ".join(f"{name}={value!r}" for name, value in self.attributes.items())
        return f"{self.name}({inside})"

    __str__ = __repr__


def _schema(kind: Kind) -> dict[str, Any]:
    if isinstance(kind, RecordType):
        return {"type": "object", "properties": {name: _schema(k) for name, k in kind.fields},
                "required": [name for name, _ in kind.fields], "additionalProperties": False}
    if isinstance(kind, tuple):
        return {"type": "array", "items": _schema(kind[1])}
    return {"type": SCALARS[kind][0]}


def _read(kind: Kind, value: Any) -> Any:
    if isinstance(kind, RecordType):
        return kind.from_json(value)
    if isinstance(kind, tuple):
        return [_read(kind[1], item) for item in value]
    return SCALARS[kind][1](value)


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.as_dict()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
