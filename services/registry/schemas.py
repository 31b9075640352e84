"""Request and answer bodies of the population registry."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, Field

IdType = Annotated[str, Field(pattern=r"^[0-9]{2}$", examples=["01"])]


class RealnameCheck(BaseModel):
    id_type: IdType = "01"
    id_number: str = Field(max_length=32, examples=["11010020171225006X"])
    name: str = Field(min_length=1, max_length=64, examples=["张三"])


class RealnameResult(BaseModel):
    result: Literal["match", "no_match", "unknown"]


class RealnameBatch(BaseModel):
    checks: list[RealnameCheck] = Field(max_length=2000)


class RealnameBatchResult(BaseModel):
    results: list[Literal["match", "no_match", "unknown", "invalid"]]


class ContactResult(BaseModel):
    phone: str | None = Field(description="the registry's phone of a matching identity; "
                              "null when the identity does not match or holds none")


class ResidentIn(BaseModel):
    id_type: IdType = "01"
    id_number: str = Field(max_length=32)
    name: str = Field(min_length=1, max_length=64)
    phone: str | None = Field(None, pattern=r"^1[0-9]{10}$")


class ResidentBatch(BaseModel):
    residents: list[ResidentIn] = Field(max_length=10_000)


class BatchResult(BaseModel):
    created: int
    existing: int


BirthCert = Annotated[str, Field(pattern=r"^[A-Z][0-9]{9}$", examples=["Q330012345"],
                                 description="birth medical certificate number")]


class BirthIn(BaseModel):
    birth_cert_no: BirthCert
    name: str = Field(min_length=1, max_length=64)
    sex: Literal["1", "2"]
    birth_date: date
    guardian_id_number: str = Field(max_length=32, description="the guardian's resident ID")


class BirthCheck(BaseModel):
    birth_cert_no: BirthCert
    name: str = Field(min_length=1, max_length=64)
    guardian_id_number: str = Field(max_length=32)


class IssuedId(BaseModel):
    id_number: str = Field(max_length=32)


class BirthId(BaseModel):
    id_number: str | None = Field(description="null until the ID number is issued")


class DeathIn(BaseModel):
    id_type: Literal["01"] = "01"
    id_number: str = Field(max_length=32, description="the resident's ID number")
    died_on: date


class Death(BaseModel):
    id: int = Field(description="its place in the feed (the cursor)")
    id_type: str
    id_number: str
    died_on: str
