"""Expert demonstrations in the Stable Baselines 2 format: recording and loading.

A dataset is a dict of arrays, saved as an ``.npz`` archive, whose first axis is the
transition index t = 0..N-1 (episodes concatenated in order):

===================  ==================  ===============================================
key                  shape               meaning
===================  ==================  ===============================================
``obs``              ``(N, *obs_shape)``  s_t, the observation *before* the action
                     or ``(N,)`` str     (image observations: relative paths of PNGs)
``actions``          ``(N, act_dim)``    a_t; ``(N, 1)`` for ``Discrete``
``rewards``          ``(N,)``            r_t
``episode_starts``   ``(N,)`` bool       True iff t is the first step of an episode
``episode_returns``  ``(E,)``            R_e = Σ_{t ∈ episode e} r_t, one per episode
===================  ==================  ===============================================

These are the keys, shapes and meanings of Stable Baselines 2's
``generate_expert_traj`` / ``ExpertDataset`` (``stable_baselines.gail``), so files saved
by it load here unchanged, and files saved here load there.

Deliberate differences from Stable Baselines 2 (each documented where it happens):

* the train/validation split is **by trajectory**, not by transition, so that no
  episode leaks into both sets (SB2 permutes transitions);
* ``traj_limitation=k`` keeps exactly the first k episodes (SB2 drops the last
  transition of the k-th one and slices ``episode_returns`` by transition count);
* observations keep their shape (SB2 flattens arrays of rank > 2), because our policies
  take raw observations and preprocess them themselves;
* files are never unpickled: archives holding pickled object arrays are refused with an
  :class:`ExpertDataError` (a ``ValueError``), as is everything else wrong with a file or
  its arrays (corrupt or truncated archives and members, wrong dtypes, shapes or lengths,
  NaN, ±inf or values that overflow float32), the message naming the file and the array;
* the work of reading a file is bounded: members are decompressed in chunks only after
  their declared sizes and ``.npy`` headers are checked against ``max_bytes`` (default
  :data:`MAX_EXPERT_BYTES`, 1 GiB), so a small "zip bomb" cannot exhaust memory;
* images are written as lossless PNG (SB2 writes JPEG unless frames are stacked by 4);
* batches are produced in the calling thread (no preprocessing process), with a seeded
  ``numpy.random.Generator``; ``sequential_preprocessing`` is accepted and ignored;
* an env passed in (or the model's) is not closed afterwards; only an env created here
  from an id string is.

The package: :mod:`~acktr_lab.expert.data` (saving, loading and checking the arrays),
:mod:`~acktr_lab.expert.recording` (:func:`generate_expert_traj`) and
:mod:`~acktr_lab.expert.dataset` (:class:`ExpertDataset`, :class:`DataLoader`).
"""

from acktr_lab.expert.data import (
    MAX_EXPERT_BYTES,
    OPTIONAL_KEYS,
    REQUIRED_KEYS,
    ExpertDataError,
    load_expert_data,
    load_image,
    save_expert_data,
)
from acktr_lab.expert.dataset import DataLoader, ExpertDataset
from acktr_lab.expert.recording import generate_expert_traj

__all__ = [
    "MAX_EXPERT_BYTES",
    "OPTIONAL_KEYS",
    "REQUIRED_KEYS",
    "DataLoader",
    "ExpertDataError",
    "ExpertDataset",
    "generate_expert_traj",
    "load_expert_data",
    "load_image",
    "save_expert_data",
]
