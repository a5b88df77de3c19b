"""What ``/models`` says a model runs on when it is served on several devices: ``auto`` measures on each, so two
GPUs may choose differently, and the description must say so rather than show whichever device reported last."""

from __future__ import annotations

from tests.service.test_backends import served_model


def test_devices_that_agree_read_as_one_backend_and_those_that_differ_each_name_theirs() -> None:
    served = served_model("timeseries")
    served.record_backend("cuda:0", "tensorrt", "auto on cuda:0: fastest")
    served.record_backend("cuda:1", "tensorrt", "auto on cuda:0: fastest")
    assert (served.backend, served.backend_note) == ("tensorrt", "auto on cuda:0: fastest")

    served.record_backend("cuda:1", "torch", "requested")  # one device switched (a background measurement)
    assert served.backend == "cuda:0 tensorrt, cuda:1 torch"
    assert served.backend_note == "cuda:0: auto on cuda:0: fastest; cuda:1: requested"

    served.record_backend("cuda:1", "tensorrt", "auto on cuda:0: fastest")  # and back: one name again
    assert (served.backend, served.backend_note) == ("tensorrt", "auto on cuda:0: fastest")


def test_the_same_backend_with_different_reasons_keeps_one_name_and_each_reason() -> None:
    served = served_model("timeseries")
    served.record_backend("cuda:0", "tensorrt", "remembered")
    served.record_backend("cuda:1", "tensorrt", "measured: 1.2 ms")
    assert served.backend == "tensorrt"
    assert served.backend_note == "cuda:0: remembered; cuda:1: measured: 1.2 ms"
