"""ISAL, influence-selective active learning (Liu et al., ICCV 2021; methods.md §8).

An unlabelled image is worth labelling when training on its pseudo labels (the model's own confident
detections) is predicted to lower the validation loss the most: its influence, from the gradient of its loss
against an inverse Hessian-vector product of the validation gradient (the LiSSA recursion over labelled images).

* :mod:`.model`: the influence parameters (the adapter's last prediction layers), gradients, Hessian-vector
  products, the LiSSA recursion, :class:`~.model.InfluenceOptions` and the :class:`~.model.InfluencePredictor`
  that fills ``Detections.extras["influence"]``.
* :mod:`.scoring`: the ranking (the most helpful image first) and the factory.

Registers: the strategy ``influence`` (:func:`~.scoring.influence`, ``requires={"val"}``: a validation split
beside the test split). No detector or training procedure of its own: any detector whose adapter names its last
prediction layers (fcos, faster_rcnn, retinanet, classifier), trained with the standard procedure.

Defaults: the factory's keywords (``score_threshold=0.1``, the released command's; ``recursion_images=1000``,
the official count per GPU; ``damping=0.01``; ``scales=None``; ``parameters="last"``; ``recursions=1``;
``empty_policy="random_fill"``).
"""
