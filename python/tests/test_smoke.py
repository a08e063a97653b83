import stockade


def test_import():
    assert stockade.__version__
    assert issubclass(stockade.TimeoutError, TimeoutError)
