"""Reproducible synthetic residents of Zhejiang's 11 cities (valid ID numbers)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from ..common.cards.idcard import make_resident_id

CITY_AREA_CODES = {
    "Hangzhou": "330100", "Ningbo": "330200", "Wenzhou": "330300", "Jiaxing": "330400",
    "Huzhou": "330500", "Shaoxing": "330600", "Jinhua": "330700", "Quzhou": "330800",
    "Zhoushan": "330900", "Taizhou": "331000", "Lishui": "331100",
}
# approximate resident shares (2020 census, millions): used only to spread synthetic people
CITY_WEIGHTS = {
    "Hangzhou": 11.9, "Ningbo": 9.4, "Wenzhou": 9.6, "Jiaxing": 5.4, "Huzhou": 3.4,
    "Shaoxing": 5.3, "Jinhua": 7.1, "Quzhou": 2.3, "Zhoushan": 1.2, "Taizhou": 6.6,
    "Lishui": 2.5,
}
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余"
    "于杜叶程魏苏吕丁任沈姚卢钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛闫段雷"
    "龙黎史陶贺毛郝顾龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建文辉力永健俊峰志国斌春"
    "梅海燕波宁晨浩宇欣怡子涵梓轩诗雨佳琪博文思远雅婷嘉"
)


@dataclass(frozen=True)
class SyntheticResident:
    id_type: str
    id_number: str
    name: str
    sex: str
    birth_date: date
    phone: str
    city: str


def generate_residents(n: int, seed: int = 2024) -> Iterator[SyntheticResident]:
    """``n`` distinct residents; the same (n, seed) always gives the same people."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E51]))
    cities = list(CITY_AREA_CODES)
    weights = np.array([CITY_WEIGHTS[c] for c in cities])
    weights /= weights.sum()
    epoch = date(1940, 1, 1)
    seen: set[str] = set()
    produced = 0
    while produced < n:
        city = cities[int(rng.choice(len(cities), p=weights))]
        area = CITY_AREA_CODES[city][:4] + f"{int(rng.integers(2, 12)):02d}"
        birth = epoch + timedelta(days=int(rng.integers(0, 365 * 84)))
        seq = int(rng.integers(0, 1000))
        id_number = make_resident_id(area, birth, seq)
        if id_number in seen:
            continue
        seen.add(id_number)
        name = SURNAMES[int(rng.integers(len(SURNAMES)))] + "".join(
            GIVEN[int(rng.integers(len(GIVEN)))] for _ in range(int(rng.integers(1, 3)))
        )
        phone = "1" + str(int(rng.choice([3, 5, 7, 8, 9]))) + f"{int(rng.integers(0, 10**9)):09d}"
        yield SyntheticResident(
            "01", id_number, name, "1" if seq % 2 else "2", birth, phone, city
        )
        produced += 1


def residents_of_groups(groups: list[str], seed: int = 2024,
                        on: date | None = None) -> list[SyntheticResident]:
    """One distinct resident per entry of ``groups`` (age groups: child, adult, elderly),
    each of that age group on ``on`` (default today), drawn from the same stream as
    :func:`generate_residents`."""
    from collections import defaultdict

    from ..rules.ages import age_group

    day = on or date.today()
    need: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        need[g].append(i)
    out: list[SyntheticResident | None] = [None] * len(groups)
    left = len(groups)
    for person in generate_residents(10 * len(groups) + 100, seed):
        slots = need.get(age_group(person.birth_date, day) or "")
        if slots:
            out[slots.pop()] = person
            left -= 1
            if not left:
                break
    if left:
        raise ValueError("not enough synthetic residents of these age groups")
    return [p for p in out if p is not None]
