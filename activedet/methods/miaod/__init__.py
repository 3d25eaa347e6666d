"""MI-AOD, multiple-instance active object detection (Yuan et al., CVPR 2021; methods.md §3).

Two adversarial instance classifiers on a RetinaNet are trained to disagree on unlabelled images and agree on
labelled ones, re-weighted by a multiple-instance (MIL) image classifier; an image is worth labelling when the
two classifiers disagree on its anchors.

* :mod:`.model`: the detector :class:`~.model.MIAODRetinaNet` (head with ``f1``, ``f2``, ``f_r``, ``f_mil``),
  the MIL weights, the per-stage losses and the ``Detections.extras`` keys it fills (``class_probs_2``,
  ``dense_probs_2``, ``dense_weights``); built by :func:`~.model.build_miaod`.
* :mod:`.training`: the per-cycle schedule (label, then ``min`` / ``max`` / label stages) as data,
  :class:`~.training.MIAODTrainer` and its :class:`~.training.MIAODStages` hook, run by
  :func:`~.training.train_miaod`.
* :mod:`.scoring`: the anchor-level disagreement score and the factory.

Registers: the strategy ``miaod`` (:func:`~.scoring.miaod`, ``requires={"miaod_detector"}``) and its ``activedet
predict`` column ``disagreement`` (``BOX_COLUMNS``); declares the detector ``miaod`` (``DETECTORS`` of
:mod:`.model`, read by ``activedet.models.DETECTORS``) and the training procedure ``miaod`` (``TRAINERS`` of
:mod:`.training`; ``training: auto`` picks it for the ``miaod`` detector, which refuses ``pseudo_labels``).

Defaults: the schedule's are :class:`~.training.MIAODOptions` (the released VOC config: ``label_epochs=3``,
``adversarial_epochs=1``, ``outer_loops=2``, ``repeat_labelled=2``, ``lr_drop_epochs=1``,
``unlabelled_ratio=1.0``, ``adversarial_lr_scale=1.0``: the unlabelled steps of the ``min`` and ``max`` stages at
the unit's lr); the score's are the factory's keywords (``topk=10000``,
``topk_fraction=0.1``, ``weighted=False``); the detector's are :func:`~.model.build_miaod`'s (``lambda_dis=0.5``,
``mil_weighting="code"``, ``classifier_loss="mean"``, ``mil_loss_weight=1.0``: the released code's).
"""
