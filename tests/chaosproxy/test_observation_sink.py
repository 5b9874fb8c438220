"""The sink builds each point as the library's model does, then hands it on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pydantic
import pytest

from aumai_chaos import ObservationPoint
from chaosproxy.observations import ObservationSink


def test_record_builds_the_point_the_model_constructor_would() -> None:
    """Same type, fields and fields-set as ``ObservationPoint(...)``, stamped now."""
    sink = ObservationSink(window=4)
    details: dict[str, object] = {"route": "pay", "status": 503, "faults": ["error"]}
    before = datetime.now(UTC)
    point = sink.record("payments", "fault_injected", details)
    after = datetime.now(UTC)
    expected = ObservationPoint(
        timestamp=point.timestamp,
        component="payments",
        event="fault_injected",
        details=details,
    )

    assert type(point) is ObservationPoint
    assert point == expected
    assert point.model_fields_set == expected.model_fields_set
    assert before <= point.timestamp <= after
    assert point.timestamp.utcoffset() == timedelta(0)


def test_record_keeps_a_copy_of_the_details() -> None:
    """Changing the caller's dict afterwards leaves the recorded point as it was."""
    sink = ObservationSink(window=4)
    details: dict[str, object] = {"status": 200}
    point = sink.record("c", "proxied", details)
    details["status"] = 500

    assert point.details == {"status": 200}
    assert sink.observer.get_observations()[0].details == {"status": 200}


def test_record_validates_like_the_model() -> None:
    """A component that is not text is refused, as the model's constructor does."""
    sink = ObservationSink(window=4)

    with pytest.raises(pydantic.ValidationError, match="component"):
        sink.record(42, "proxied", {})  # type: ignore[arg-type]
    assert len(sink.observer) == 0


def test_record_hands_the_one_point_to_window_and_listeners_in_order() -> None:
    """The window keeps the point, and each listener sees it, in the order added."""
    sink = ObservationSink(window=4)
    seen: list[tuple[str, ObservationPoint]] = []
    sink.listeners.append(lambda point: seen.append(("first", point)))
    sink.listeners.append(lambda point: seen.append(("second", point)))
    point = sink.record("c", "proxied", {"status": 200})

    assert sink.observer.get_observations() == [point]
    assert seen == [("first", point), ("second", point)]
    assert seen[0][1] is point
