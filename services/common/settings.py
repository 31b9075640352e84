"""One place for configuration: environment variables with the prefix ``EHC_``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsInvalid(ValueError):
    """An ``EHC_*`` variable the settings refuse: each named with its value and why, one
    line each (what a command or a server prints instead of a traceback)."""


class Settings(BaseSettings):
    """Settings of the whole stack; every field is ``EHC_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="EHC_", extra="ignore")

    var_dir: Path = Field(Path("var"), description="where SQLite files and dev keys live")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; unset = one SQLite file per system under var_dir; "
        "postgresql+psycopg://... = one schema per system in that database",
    )
    db_schema_prefix: str = Field("", description="prefix of the PostgreSQL schema names")
    qr_format: Literal["hardened", "national"] = "hardened"
    dynamic_code_validity_s: int = Field(60, ge=5, le=3600)
    max_verifications_per_code: int = Field(
        3, ge=0, description="successful verifications one dynamic code allows; 0 = unlimited"
    )
    clock_skew_s: int = Field(30, ge=0, le=600, description="tolerated terminal clock skew")
    signature_max_age_s: int = Field(300, ge=5, le=3600)
    master_key_hex: str | None = Field(
        None, description="32 hex chars wrapping data keys; unset = a dev key in var_dir"
    )
    admin_token: str | None = Field(None, description="admin bearer token; unset = dev token")
    service_token: str | None = Field(None, description="system-to-system token")
    data_token: str | None = Field(None, description="the data resources layer's read-only "
                                   "token for the systems' export routes; unset = derived "
                                   "from the master key")
    registry_url: str | None = Field(None, description="registry base URL when out of process")
    hospital_url: str | None = Field(None, description="hospital service base URL when out of "
                                     "process (the unified entry's kiosk routes)")
    rate_limit_terminal_per_s: float = Field(
        50.0, ge=0, description="signed requests a second per terminal (0 = no limit); a "
        "reading terminal scans a few codes a minute, so 50/s only stops runaway clients")
    rate_limit_app_per_s: float = Field(5000.0, ge=0, description="per channel app "
                                        "(0 = no limit)")
    socialcard_url: str | None = Field(None, description="e-SSC system base URL when out "
                                       "of process")
    healthcard_url: str | None = Field(None, description="EHC system base URL when out of "
                                       "process")
    payment_url: str | None = Field(None, description="payment gateway base URL when out "
                                    "of process")
    payment_timeout_s: float = Field(3.0, gt=0, le=60, description="how long settling "
                                     "waits for the gateway before the visit is left "
                                     "awaiting confirmation (fail closed)")
    db_pool_size: int = Field(4, ge=1, le=64, description="PostgreSQL connections each "
                              "system keeps per process (as many again may open at peaks): "
                              "six systems x workers x servers, and the hot path's three "
                              "a worker, must stay under the server's max_connections")
    store_timeout_s: float = Field(5.0, gt=0, le=120, description="how long a request "
                                   "waits for a locked or silent store before it answers "
                                   "503 STORE_UNAVAILABLE")
    confirm_first_retry_s: float = Field(5.0, gt=0, le=3600, description="the settlement "
                                         "sweep's first wait before asking the gateway "
                                         "again about an unknown cash part; it doubles")
    confirm_max_attempts: int = Field(12, ge=1, le=100, description="questions the sweep "
                                      "asks about one unknown cash part before the visit "
                                      "is left 'unresolved' for an operator")
    peer_timeout_s: float = Field(0.5, gt=0, le=30, description="how long a fused "
                                  "verification waits for the e-SSC side before it answers "
                                  "the EHC identity alone (fail soft)")
    sync_interval_s: float = Field(5.0, ge=0, description="seconds between pulls of the "
                                   "peer's usage records (0 = only on demand)")
    login_codes_per_identity: int = Field(3, ge=1, description="SMS login codes one "
                                          "identity may be sent per 10 minutes")
    login_codes_per_client: int = Field(20, ge=1, description="SMS login codes one client "
                                        "address may ask for per 10 minutes")
    login_tries_per_identity: int = Field(10, ge=1, description="login code tries per "
                                          "identity per hour; beyond, it is locked")
    login_tries_per_client: int = Field(30, ge=1, description="login code tries per client "
                                        "address per 10 minutes")
    sms_url: str | None = Field(None, description="SMS gateway base URL when out of process")
    redis_url: str | None = Field(None, description="redis://host:port/db shared by every "
                                  "worker and host for nonces and rate limits; unset = "
                                  "each system's database")
    redis_prefix: str = Field("ehc", pattern=r"^[A-Za-z0-9_.-]{1,40}$", description="prefix "
                              "of this deployment's Redis keys")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"a log level: {', '.join(LOG_LEVELS)}")
        return value.upper()

    def __init__(self, **values: Any) -> None:
        """As pydantic's, but a refused value (from ``EHC_*`` or given) is
        ``SettingsInvalid`` naming the variable, not a page of validation report."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsInvalid("\n".join(
                f"EHC_{'_'.join(str(part) for part in e['loc']).upper()}={e['input']!r}: "
                f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
