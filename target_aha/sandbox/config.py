"""The sandbox's adjustable behaviour: rate limits and the faults it injects.

A frozen dataclass swapped as a whole by `Sandbox.configure`, so a request handler that took
a snapshot sees one consistent configuration even while a test reconfigures the sandbox.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

ERROR_STATUSES = (500, 502, 503, 504)
_RATES = ("error_rate", "drop_rate", "commit_timeout_rate", "commit_error_rate", "throttle_rate")
_DURATIONS = ("latency_ms", "latency_jitter_ms", "commit_timeout_seconds")


@dataclass(frozen=True)
class Config:
    """What `Sandbox.configure` sets; see that method for the meaning of each field."""

    latency_ms: float = 0
    latency_jitter_ms: float = 0
    error_rate: float = 0.0
    error_status: int = 500
    drop_rate: float = 0.0
    commit_timeout_rate: float = 0.0
    commit_timeout_seconds: float = 5.0
    commit_error_rate: float = 0.0
    throttle_rate: float = 0.0
    rate_per_second: int | None = None
    rate_per_minute: int | None = None
    send_retry_after: bool = False
    forbidden_products: tuple[str, ...] = ()
    relax_goal_validation: bool = False
    faults_on_writes_only: bool = False

    def updated(self, **changes: Any) -> Config:
        """A copy with `changes` applied; unknown names are a TypeError, bad values ValueError."""
        unknown = set(changes) - {item.name for item in fields(self)}
        if unknown:
            raise TypeError(f"unknown sandbox setting(s): {', '.join(sorted(unknown))}")
        if "forbidden_products" in changes:
            products = changes["forbidden_products"] or ()
            changes["forbidden_products"] = (
                (products,) if isinstance(products, str) else tuple(str(p) for p in products)
            )
        config = replace(self, **changes)
        config.validate()
        return config

    def validate(self) -> None:
        """Reject values that would make the sandbox misbehave in confusing ways."""
        for name in _RATES:
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}")
        faults = self.error_rate + self.drop_rate + self.commit_timeout_rate
        if faults + self.commit_error_rate > 1:
            raise ValueError(
                "error_rate + drop_rate + commit_timeout_rate + commit_error_rate must not "
                "exceed 1"
            )
        for name in _DURATIONS:
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.error_status not in ERROR_STATUSES:
            raise ValueError(
                f"error_status must be one of {ERROR_STATUSES}, got {self.error_status!r}"
            )
        for name in ("rate_per_second", "rate_per_minute"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        for name in ("send_retry_after", "relax_goal_validation", "faults_on_writes_only"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as `GET /__sandbox/config` answers it."""
        data = asdict(self)
        data["forbidden_products"] = list(self.forbidden_products)
        return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
