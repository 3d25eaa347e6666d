"""PPAL, plug-and-play active learning for object detection (Yang et al., CVPR 2024; methods.md §7.4).

Two stages: difficulty-calibrated uncertainty sampling (DCUS) shortlists the pool, weighting each detection's
entropy by how hard its class has been during training; then category-conditioned matching (CCM) k-medoids picks
a diverse batch from the shortlist.

* :mod:`.model`: the per-class difficulty kept during training (:class:`~.model.ClassDifficultyEMA`, a model
  addition, ``MODEL_ADDITIONS``, at the ``"training_samples"`` hook point: the retinanet and faster_rcnn builders
  install it with ``difficulty_ema=True``) and the
  :class:`~.model.DifficultyPredictor` that fills ``Detections.extras["class_quality"]``.
* :mod:`.scoring`: the DCUS score, the CCM distance, k-medoids and the factory.

Registers: the strategy ``ppal`` (:func:`~.scoring.ppal`, ``requires={"difficulty_ema"}``). No detector or
training procedure of its own: a retinanet or faster_rcnn detector built with ``detector_options:
{difficulty_ema: true}``, trained with the standard procedure (the difficulty is updated in its training
forward passes).

Defaults: the difficulty's are the builders' ``difficulty_momentum=0.99``, ``difficulty_xi=0.6`` and
``difficulty_absent="keep"`` (the documented fix; ``"decay"`` is the official code's); the score's
are the factory's keywords (``shortlist=4.0``, ``alpha=0.3``, ``beta=0.2``, ``score_threshold=0.05``,
``min_size=4.0``, ``max_aspect=5.0``, ``max_detections=100``, ``iterations=100``, ``dcus_postprocess="detector"``,
``distance="paper"``).
"""
