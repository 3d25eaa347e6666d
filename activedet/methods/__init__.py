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

A subpackage's ``__init__`` imports none of its files, and no generic module names a method:
:mod:`activedet.strategies` imports every ``scoring.py`` (which registers the method); ``model.py`` declares the
detectors (``DETECTORS``), the ``Detections.extras`` keys (``EXTRA_FIELDS``) and the model additions
(``MODEL_ADDITIONS``, :mod:`activedet.models.additions`) and ``training.py`` the training procedures
(``TRAINERS``, ``DETECTOR_TRAINING``) that :mod:`activedet.models` and :mod:`activedet.engine.trainers` collect on
first lookup (:mod:`activedet.plugins`). Methods without model additions (random, uncertainty, diversity, kmeans,
hybrid, compose, localization, CALD) are single modules in :mod:`activedet.strategies`.
"""
