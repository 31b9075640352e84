"""HTTP API of the population registry (called by the card systems, not by the public)."""


from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ..common.errors import error_responses, refuse_invalid_id
from .service import NewResident, RegistryService

IdType = Annotated[str, Field(pattern=r"^\d{2}$", examples=["01"])]


class RealnameCheck(BaseModel):
    id_type: IdType = "01"
    id_number: str = Field(max_length=32, examples=["11010020171225006X"])
    name: str = Field(min_length=1, max_length=64, examples=["张三"])


class RealnameResult(BaseModel):
    result: Literal["match", "no_match", "unknown"]


class ResidentIn(BaseModel):
    id_type: IdType = "01"
    id_number: str = Field(max_length=32)
    name: str = Field(min_length=1, max_length=64)
    phone: str | None = Field(None, pattern=r"^1\d{10}$")


class ResidentBatch(BaseModel):
    residents: list[ResidentIn] = Field(max_length=10_000)


class BatchResult(BaseModel):
    created: int
    existing: int


_BAD_ID = (422, "INVALID_ID_NUMBER", "the ID number is malformed (length, check digit, date)")
_AUTH = [(401, "UNAUTHENTICATED", "no bearer token"), (403, "FORBIDDEN", "token not allowed")]


def make_router(service: RegistryService, guard, admin_guard) -> APIRouter:  # type: ignore[no-untyped-def]
    router = APIRouter(prefix="/registry/v1", tags=["registry"])

    @router.post(
        "/realname-checks",
        response_model=RealnameResult,
        dependencies=[Depends(guard)],
        responses=error_responses(_BAD_ID, *_AUTH),
        summary="Real-name check of an identity against the population database",
    )
    def realname_check(body: RealnameCheck) -> RealnameResult:
        with refuse_invalid_id():
            return RealnameResult(
                result=service.realname_check(body.id_type, body.id_number, body.name)
            )

    @router.post(
        "/residents:batch",
        response_model=BatchResult,
        dependencies=[Depends(admin_guard)],
        responses=error_responses(_BAD_ID, *_AUTH),
        summary="Load residents (all or nothing)",
    )
    def add_residents(body: ResidentBatch) -> BatchResult:
        with refuse_invalid_id():
            created, existing = service.add_residents(
                NewResident(r.id_type, r.id_number, r.name, r.phone) for r in body.residents
            )
        return BatchResult(created=created, existing=existing)

    @router.get("/stats", dependencies=[Depends(admin_guard)], responses=error_responses(*_AUTH))
    def stats() -> dict[str, int]:
        return {"residents": service.count()}

    return router
