import os

import pytest

from hybridlib.paths import find_data_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = find_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="no benchmark data directory (set HYBRIDLIB_DATA_DIR)")


@pytest.fixture(scope="session")
def encoder():
    """The full embedded multilingual-e5-small (12 layers)."""
    from hybridlib.encoders import load_encoder
    return load_encoder()


@pytest.fixture(scope="session")
def small_encoder():
    """The embedded encoder truncated to 2 layers: real weights, fast."""
    from hybridlib.encoders import load_encoder
    return load_encoder(num_layers=2)


def pytest_collection_modifyitems(items):
    """nbval's cells of a notebook are slow tests: the notebook runs (make test's second lane)."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
