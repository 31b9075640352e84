"""Service-level objectives of a load test and their verdict from Locust's statistics."""

from __future__ import annotations

from dataclasses import dataclass

HOT = ("verify", "verify fused", "verify pharmacy")  # the requests the latency objectives apply to


@dataclass(frozen=True)
class Slo:
    p95_ms: float = 200.0
    p99_ms: float = 500.0
    max_failure_ratio: float = 0.01
    min_rps: float = 0.0



def hot_entry(stats, names: tuple[str, ...], method: str):
    """The hot requests' statistics as one entry (plain and fused verifications are the
    same route; a mix may have only one of them)."""
    from locust.stats import StatsEntry

    if len(names) == 1:
        return stats.get(names[0], method)
    combined = StatsEntry(stats, " + ".join(names), method, use_response_times_cache=False)
    for name in names:
        if (name, method) in stats.entries:
            combined.extend(stats.entries[(name, method)])
    return combined


def evaluate(stats, slo: Slo, names: tuple[str, ...] | str = HOT,
             method: str = "POST") -> dict:
    """Verdict over the hot requests' latency and everyone's failures and throughput."""
    names = (names,) if isinstance(names, str) else tuple(names)
    name = " + ".join(names)
    hot = hot_entry(stats, names, method)
    total = stats.total
    fail_ratio = total.num_failures / total.num_requests if total.num_requests else 1.0
    p95 = hot.get_response_time_percentile(0.95) if hot.num_requests else float("inf")
    p99 = hot.get_response_time_percentile(0.99) if hot.num_requests else float("inf")
    rps = hot.total_rps if hot.num_requests else 0.0
    checks = {
        "p95_ms": {"measured": p95, "limit": slo.p95_ms, "ok": p95 <= slo.p95_ms},
        "p99_ms": {"measured": p99, "limit": slo.p99_ms, "ok": p99 <= slo.p99_ms},
        "failure_ratio": {"measured": fail_ratio, "limit": slo.max_failure_ratio,
                          "ok": fail_ratio <= slo.max_failure_ratio},
        "hot_rps": {"measured": rps, "limit": slo.min_rps, "ok": rps >= slo.min_rps},
    }
    return {"passed": all(c["ok"] for c in checks.values()), "checks": checks,
            "requests": total.num_requests, "failures": total.num_failures,
            "hot_request": name, "hot_requests": hot.num_requests,
            "hot_failures": hot.num_failures}
