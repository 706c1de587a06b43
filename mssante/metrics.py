"""A small metrics registry rendered in the Prometheus text format.

Counters and gauges with labels; enough for `/metrics` without a dependency.
Labels carry identifiers (listener names, outcomes), never health data.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"


@dataclass
class _Metric:
    name: str
    help: str
    kind: str
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self.lock:
            self.values[key] = self.values.get(key, 0.0) + float(amount)

    def set(self, value: float, **labels: str) -> None:
        with self.lock:
            self.values[tuple(sorted(labels.items()))] = float(value)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        with self.lock:
            items = sorted(self.values.items())
        for key, value in items:
            number = int(value) if value.is_integer() else value
            lines.append(f"{self.name}{_labels(dict(key))} {number}")
        return lines


class Metrics:
    """Named counters and gauges; creating one twice returns the same metric."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def counter(self, name: str, help: str) -> _Metric:
        return self._metrics.setdefault(name, _Metric(name, help, "counter"))

    def gauge(self, name: str, help: str) -> _Metric:
        return self._metrics.setdefault(name, _Metric(name, help, "gauge"))

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines += metric.render()
        return "\n".join(lines) + "\n"
