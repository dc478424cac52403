"""The environment variables acktr_lab sets for TensorFlow unless the user set them.

TensorFlow reads them when it is first imported, so the package imports this module
before anything that imports TensorFlow:

* ``TF_CPP_MIN_LOG_LEVEL=2``: TensorFlow's C++ start-up lines (absl::InitializeLog,
  cpu_feature_guard) are noise for users of the CLI and the notebooks;
* ``TF_ENABLE_ONEDNN_OPTS=0``: on CPUs with AVX512-VNNI, BF16 or AMX (AMD Zen 4, recent
  Xeons) TensorFlow turns on its oneDNN kernels by default and announces it with an absl
  line that ``TF_CPP_MIN_LOG_LEVEL`` does not silence; those kernels also round differently
  from the Eigen ones every other CPU runs, so the same seed would train differently from
  one CPU kind to another (``TF_ENABLE_ONEDNN_OPTS=1`` turns them on).
"""

import os

TENSORFLOW_ENV_DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}

for _name, _value in TENSORFLOW_ENV_DEFAULTS.items():
    os.environ.setdefault(_name, _value)
