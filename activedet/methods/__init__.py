"""Methods with model additions: one subpackage per method, holding everything that method adds.

=====================  ==================================================================================
package                what it holds
=====================  ==================================================================================
:mod:`.stochastic`     MC-dropout and deep ensembles (methods.md §2): head dropout, the ensemble detector, the
                       predictor of several passes, the ``mc_dropout`` and ``ensemble`` scores
:mod:`.miaod`          MI-AOD (§3): the detector with two adversarial classifiers and the MIL head, its
                       per-cycle training schedule, the ``miaod`` score
:mod:`.almdn`          AL-MDN (§4): the mixture-density heads (SSD, RetinaNet), the ``almdn`` score
:mod:`.ppal`           PPAL (§7.4): the per-class difficulty kept during training, DCUS and CCM (``ppal``)
:mod:`.isal`           ISAL (§8): influence through LiSSA, the ``influence`` score
=====================  ==================================================================================

Each subpackage has the same files: ``model.py`` (heads, losses, predictors: what the detector gains),
``scoring.py`` (the scoring function, the selection and the factory registered with
:func:`~activedet.strategies.registry.register`), ``training.py`` when the method trains differently, and an
``__init__.py`` whose docstring is the method's documentation: what it registers and where its defaults live.

A subpackage's ``__init__`` imports none of its files: :mod:`activedet.strategies` imports every ``scoring.py``
(which registers the method), :mod:`activedet.models` takes the detectors' builders from the ``model.py`` files
(``DETECTORS``) and :mod:`activedet.engine.trainers` the training procedures (``TRAINERS``). This package imports
:mod:`activedet.models` first, so a method's ``model.py`` imported on its own finds the detector map already
built rather than half-built. Methods without model additions (random, uncertainty, diversity, kmeans, hybrid,
compose, localization, CALD) are single modules in :mod:`activedet.strategies`.
"""

# A method's model.py imports activedet.models, whose __init__ imports that model.py back for DETECTORS: loading
# activedet.models first makes that import the first one, not a circular one.
from .. import models  # noqa: F401
