"""hybridlib: hybrid batch training vs gradient mixing for multilingual dense retrieval."""
__version__ = "0.1.0"

import os as _os
import warnings as _warnings

# tqdm.auto (imported by the Hugging Face libraries) warns in notebooks without ipywidgets; our bars are text.
_warnings.filterwarnings("ignore", message="IProgress not found")

# The hub is often out of reach (CI, offline machines): fail in seconds instead of retrying for a minute.
_os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
_os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
