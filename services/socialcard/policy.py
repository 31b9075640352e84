"""Outpatient insurance policies as data, and the split of a visit's fees into the pooled
fund (统筹基金), the personal account (个人账户) and cash (个人现金), in integer fen.

The split, for a visit of total T (docs/sources.md):
- category C items (全自费) are the patient's own; of category B items the patient first
  pays ``b_self_permille`` (乙类先行自付, rounded up to the fen); the rest is *eligible*;
- of the eligible amount the patient pays what is left of the year's deductible (起付线);
- of the remainder the fund pays ``ratio_permille`` by hospital level (rounded down to
  the fen: the fund never pays a fraction more), at most what is left of the year's cap;
- at a designated retail pharmacy (level 0) no deductible applies and the fund pays
  ``pharmacy_fund_permille`` of the eligible amount (0 in the policy file: a purchase is
  paid from the personal account and cash);
- the personal account pays the patient's share (without C items unless the policy says
  so) up to its balance; cash pays the rest.
So fund + account + cash = T exactly, no part is negative, and the year's deductible and
cap hold however a year's visits fall."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt

POLICY_FILE = Path(__file__).with_name("policies") / "zhejiang.yaml"


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str = Field(pattern=r"^(\*|[0-9]{6})$")
    insurance_type: Literal["310", "390"]
    effective_from: date
    deductible_fen: StrictInt = Field(ge=0)
    ratio_permille: dict[Literal[1, 2, 3], StrictInt]
    annual_cap_fen: StrictInt = Field(ge=0)
    b_self_permille: StrictInt = Field(ge=0, le=1000)
    personal_account: bool
    account_covers_self_items: bool
    pharmacy_fund_permille: StrictInt = Field(0, ge=0, le=1000)

    def model_post_init(self, _context: object) -> None:
        if set(self.ratio_permille) != {1, 2, 3} or not all(
                0 <= r <= 1000 for r in self.ratio_permille.values()):
            raise ValueError("ratio_permille: levels 1, 2, 3, each 0..1000")


class PolicyBook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policies: list[Policy] = Field(min_length=1)

    def find(self, region: str, insurance_type: str, on: date) -> Policy:
        """The newest version in force on ``on``: the region's own, else the default."""
        for wanted in (region, "*"):
            versions = [p for p in self.policies if p.region == wanted
                        and p.insurance_type == insurance_type and p.effective_from <= on]
            if versions:
                return max(versions, key=lambda p: p.effective_from)
        raise LookupError(f"no policy for region {region}, type {insurance_type} on {on}")


@functools.lru_cache(maxsize=4)
def load_policies(path: Path = POLICY_FILE) -> PolicyBook:
    return PolicyBook.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class FeeItem:
    code: str
    category: Literal["A", "B", "C"]
    amount_fen: int


@dataclass(frozen=True)
class YearToDate:
    """What this person's year has used so far."""

    deductible_used_fen: int = 0
    fund_used_fen: int = 0


@dataclass(frozen=True)
class Split:
    total_fen: int
    fund_fen: int
    account_fen: int
    cash_fen: int
    self_items_fen: int  # category C plus the B self-pay share
    deductible_fen: int  # paid toward this year's deductible in this visit
    eligible_fen: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


PHARMACY = 0  # the level of a designated retail pharmacy


def split(items: list[FeeItem], policy: Policy, level: Literal[0, 1, 2, 3], ytd: YearToDate,
          account_balance_fen: int) -> Split:
    if not items:
        raise ValueError("a visit has at least one fee item")
    if any(i.amount_fen < 0 for i in items):
        raise ValueError("fee amounts are not negative")
    total = sum(i.amount_fen for i in items)
    c_total = sum(i.amount_fen for i in items if i.category == "C")
    b_total = sum(i.amount_fen for i in items if i.category == "B")
    b_self = -(-b_total * policy.b_self_permille // 1000)  # rounded up
    eligible = total - c_total - b_self
    if level == PHARMACY:
        deductible, ratio = 0, policy.pharmacy_fund_permille
    else:
        deductible = min(eligible, max(policy.deductible_fen - ytd.deductible_used_fen, 0))
        ratio = policy.ratio_permille[cast(Literal[1, 2, 3], level)]
    above = eligible - deductible
    fund = min(above * ratio // 1000,
               max(policy.annual_cap_fen - ytd.fund_used_fen, 0))
    own = total - fund
    payable_by_account = own if policy.account_covers_self_items else own - c_total - b_self
    account = min(max(payable_by_account, 0), max(account_balance_fen, 0)) if (
        policy.personal_account) else 0
    return Split(total, fund, account, total - fund - account, c_total + b_self, deductible,
                 eligible)
