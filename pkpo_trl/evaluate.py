"""`pkpo-eval` lives in :mod:`pkpo_trl.evaluation`; this module keeps the old import path and
`python -m pkpo_trl.evaluate` working."""

from .evaluation import *  # noqa: F403
from .evaluation import __all__  # noqa: F401
from .evaluation.cache import CACHE_VERSION  # noqa: F401
from .evaluation.cli import _print_k_advice, default_ks, main  # noqa: F401
from .evaluation.models import ADAPTER_CONFIG_FILE, RUN_CONFIG_FILE, check_adapter, load_model  # noqa: F401
from .evaluation.sampling import _generate  # noqa: F401

if __name__ == "__main__":
    main()
