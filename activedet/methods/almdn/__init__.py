"""AL-MDN, active learning with mixture density networks (Choi et al., ICCV 2021; methods.md §4).

The detector's head predicts a Gaussian mixture for every box coordinate and every class score, so one forward
pass separates aleatoric (noise) from epistemic (model) uncertainty, for localisation and for classification;
an image is worth labelling when one of its four uncertainties is high relative to the pool.

* :mod:`.head`: the mixture-density prediction layers, their outputs and losses.
* :mod:`.model`: the detectors with those heads, SSD (:class:`~.model.MDNSSD`) and RetinaNet
  (:class:`~.model.MDNRetinaNet`), the four uncertainties of a detection (``Detections.extras["uncertainties"]``,
  columns :data:`~.model.UNCERTAINTY_TYPES`); built by :func:`~.model.build_almdn_ssd` and
  :func:`~.model.build_almdn_retinanet`.
* :mod:`.scoring`: the per-image vectors, the pool-level z-normalisation and the factory.

Registers: the strategy ``almdn`` (:func:`~.scoring.almdn`, ``requires={"almdn_detector"}``) and its ``activedet
predict --uncertainty`` columns (``BOX_COLUMNS``); declares the detectors ``almdn_ssd`` and ``almdn_retinanet``
(``DETECTORS`` of :mod:`.model`, read by ``activedet.models.DETECTORS``). It trains with the standard procedure.

Defaults: the detectors' are the builders' keywords (``components=4``, ``cls_loss="type1"``, ``beta=2.0``: the
released code's; ``separable=True``, the deviation documented in :mod:`.model`); the score's are the factory's
(``score_threshold=0.5``, the released code's; ``empty_policy="lowest"``).
"""
