"""MC-dropout and deep ensembles: several predictions of one image, and scores from their disagreement
(methods.md §2).

* :mod:`.model`: what the passes switch on or run over: head dropout (``activedet.models._common.HeadDropout``; every
  detector builder takes ``dropout=p`` and puts it where its adapter's ``dropout_sites()`` say), the members of
  an :class:`activedet.models.EnsembleDetector` (``ensemble_size``, trained independently by
  :func:`activedet.engine.trainers.train_ensemble`); and the
  :class:`~.model.StochasticPredictor` that reduces ``T`` passes or ``M`` members on the fly and fills the
  ``Detections.extras`` keys ``passes``, ``dense_expected_entropy`` and ``dense_box_var``.
* :mod:`.scoring`: the dense (anchor-level) and matched (clustered detections) formulations and the factories.

Registers: the strategies ``mc_dropout`` (:func:`~.scoring.mc_dropout`, ``requires`` a detector trained with
head dropout) and ``ensemble`` (:func:`~.scoring.ensemble`, ``requires`` ``ensemble_size >= 2``). No detector
name or training procedure of its own: any detector, built with ``detector_options: {dropout: ...}`` for
MC-dropout, trained with the standard procedure (each ensemble member independently). Its ``activedet predict
--uncertainty`` columns (``BOX_COLUMNS``) and predictor (``PREDICTORS``) are in :mod:`.scoring`.

Defaults: the factories' keywords (``passes=20`` for ``mc_dropout``; ``formulation="dense"``,
``measure="mutual_information"``, ``score_threshold=0.05``, ``aggregation="max"``, ``topk=10``; matched:
``detection_threshold=0.5``, ``iou_threshold=0.5``, ``same_label=False``, ``cluster_aggregation="min"``).
"""
