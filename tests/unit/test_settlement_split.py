"""The insurance split as properties (hypothesis) over random fee lists and policies, a
year of visits against the deductible and the cap, the shipped policy file, and the
README's worked example computed by hand."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.socialcard.policy import (
    FeeItem,
    Policy,
    YearToDate,
    load_policies,
    split,
)

amounts = st.integers(min_value=0, max_value=5_000_000)
items = st.lists(st.builds(FeeItem, code=st.just("x"), category=st.sampled_from("ABC"),
                           amount_fen=amounts), min_size=1, max_size=30)
permille = st.integers(min_value=0, max_value=1000)
policies = st.builds(
    Policy, region=st.just("*"), insurance_type=st.sampled_from(["310", "390"]),
    effective_from=st.just(date(2024, 1, 1)),
    deductible_fen=st.integers(min_value=0, max_value=500_000),
    ratio_permille=st.fixed_dictionaries({1: permille, 2: permille, 3: permille}),
    annual_cap_fen=st.integers(min_value=0, max_value=10_000_000),
    b_self_permille=permille, personal_account=st.booleans(),
    account_covers_self_items=st.booleans(), pharmacy_fund_permille=permille)
years = st.builds(YearToDate, deductible_used_fen=st.integers(0, 600_000),
                  fund_used_fen=st.integers(0, 12_000_000))


@settings(max_examples=400, deadline=None)
@given(items=items, policy=policies, level=st.sampled_from([0, 1, 2, 3]), ytd=years,
       balance=st.integers(0, 3_000_000))
def test_the_split_sums_exactly_and_no_part_is_negative(items, policy, level, ytd,
                                                        balance) -> None:
    s = split(items, policy, level, ytd, balance)
    assert s.fund_fen + s.account_fen + s.cash_fen == s.total_fen == sum(
        i.amount_fen for i in items)
    assert min(s.fund_fen, s.account_fen, s.cash_fen, s.deductible_fen) >= 0
    assert s.account_fen <= balance and (policy.personal_account or s.account_fen == 0)
    c_items = sum(i.amount_fen for i in items if i.category == "C")
    assert s.fund_fen <= s.total_fen - c_items  # the fund never pays for 全自费 items
    assert s.fund_fen <= max(policy.annual_cap_fen - ytd.fund_used_fen, 0)
    assert s.deductible_fen <= max(policy.deductible_fen - ytd.deductible_used_fen, 0)
    if not policy.account_covers_self_items:
        assert s.cash_fen >= s.self_items_fen
    # the fund pays its ratio of what lies above the deductible, rounded down, unless capped
    above = s.eligible_fen - s.deductible_fen
    ratio = policy.pharmacy_fund_permille if level == 0 else policy.ratio_permille[level]
    assert s.fund_fen <= above * ratio // 1000


@settings(max_examples=150, deadline=None)
@given(visits=st.lists(items, min_size=1, max_size=40), policy=policies,
       level=st.sampled_from([1, 2, 3]), balance=st.integers(0, 2_000_000))
def test_a_year_of_visits_respects_deductible_and_cap(visits, policy, level,
                                                      balance) -> None:
    ytd = YearToDate()
    paid_to_deductible = fund_total = 0
    for visit in visits:
        s = split(visit, policy, level, ytd, balance)
        balance -= s.account_fen
        assert balance >= 0
        paid_to_deductible += s.deductible_fen
        fund_total += s.fund_fen
        # the fund pays nothing while the deductible is still open
        if ytd.deductible_used_fen + s.deductible_fen < policy.deductible_fen:
            assert s.fund_fen == 0
        ytd = YearToDate(ytd.deductible_used_fen + s.deductible_fen,
                         ytd.fund_used_fen + s.fund_fen)
    assert paid_to_deductible <= policy.deductible_fen
    assert fund_total <= policy.annual_cap_fen


def test_policies_are_versioned_by_effective_date() -> None:
    book = load_policies()
    assert book.find("330100", "310", date(2025, 6, 1)).deductible_fen == 80_000
    assert book.find("330100", "310", date(2026, 6, 1)).deductible_fen == 70_000
    assert book.find("330200", "310", date(2026, 6, 1)).region == "*"  # the default
    with pytest.raises(LookupError):
        book.find("330100", "310", date(2023, 12, 31))


def test_worked_example_of_the_readme() -> None:
    """Hangzhou (330100), employee insurance (310), 2026 policy, tertiary hospital; the
    year's deductible 600 yuan used of 700; personal account 300 yuan."""
    policy = load_policies().find("330100", "310", date(2026, 11, 26))
    visit = [FeeItem("consultation", "A", 5_000), FeeItem("drugs", "A", 45_000),
             FeeItem("CT scan", "B", 30_000), FeeItem("private room", "C", 20_000)]
    s = split(visit, policy, 3, YearToDate(60_000, 0), 30_000)
    # B self-pay 10 % of 300 = 30 yuan; eligible 1000 - 200 - 30 = 770 yuan;
    # deductible left 100 yuan; fund 83 % of 670 = 556.10 yuan; own share 443.90 yuan, of
    # which the account pays what is not category C or B self-pay: 443.90 - 230 = 213.90
    assert (s.total_fen, s.eligible_fen, s.deductible_fen) == (100_000, 77_000, 10_000)
    assert (s.fund_fen, s.account_fen, s.cash_fen) == (55_610, 21_390, 23_000)


def test_a_pharmacy_purchase_is_paid_from_the_account_and_cash() -> None:
    """A designated retail pharmacy (level 0): the policy file lets the fund pay nothing
    there and no deductible applies; the employee's personal account pays the own share
    it may (not category C), cash the rest; the year's accumulators are untouched."""
    policy = load_policies().find("330100", "310", date(2026, 11, 26))
    assert policy.pharmacy_fund_permille == 0
    basket = [FeeItem("drugs", "A", 8_000), FeeItem("drugs", "B", 2_000),
              FeeItem("vitamins", "C", 1_500)]
    s = split(basket, policy, 0, YearToDate(0, 0), 100_000)
    assert (s.fund_fen, s.deductible_fen) == (0, 0)
    assert s.account_fen == 11_500 - 1_500 - 200 and s.cash_fen == 1_700  # C and B self-pay
    paid = policy.model_copy(update={"pharmacy_fund_permille": 500})
    half = split(basket, paid, 0, YearToDate(0, 0), 0)
    assert half.fund_fen == (8_000 + 2_000 - 200) * 500 // 1000 and half.deductible_fen == 0
