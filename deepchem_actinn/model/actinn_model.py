"""ACTINN as a DeepChem ``TorchModel``: training, the one inference path, saving.

:class:`ACTINNModel` trains :class:`~deepchem_actinn.model.network.ActinnClassifier`
the way ACTINN does, through DeepChem: softmax cross-entropy, Adam at 1e-4
with a staircase decay of 0.95 every 1000 steps that really applies (the
schedule sits inside the optimizer, where ``TorchModel`` reads it), an L2
penalty of 0.005 on the weights only (see
:class:`~deepchem_actinn.model.training.WeightL2Adam`), mini-batches of 128
with no padding, 50 epochs. :meth:`ACTINNModel.predict_blocks` is the one
inference path every prediction goes through.

A trained model is a reusable reference: :meth:`ACTINNModel.save` writes
its genes, classes, preprocessing and hyper-parameters as JSON beside the
weights, and :meth:`ACTINNModel.load` rebuilds it in any process without
unpickling anything (:mod:`deepchem_actinn.model.file_format`).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import warnings
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from deepchem_actinn.errors import ModelFileError, user_stacklevel
from deepchem_actinn.io import Names
from deepchem_actinn.model import file_format
from deepchem_actinn.model.file_format import load_model, save_model
from deepchem_actinn.model.inference import PredictionBlock, predict_blocks
from deepchem_actinn.model.network import ActinnClassifier, to_torch_csr
from deepchem_actinn.model.presets import (
    ACTINN_DEFAULTS,
    GENE_SELECTION_DEFAULTS,
    TRAINING_OPTIONS,
    preset_settings,
    record_gene_selection,
)
from deepchem_actinn.model.training import (
    WeightL2Adam,
    _DivergenceGuard,
    _raw_counts_summary,
    _schedule_value,
    _SmoothedCrossEntropy,
    balanced_weights,
    class_counts,
)
from deepchem_actinn.preprocessing import PreprocessingWarning, ScRNAFeaturizer
from deepchem_actinn.quiet import deepchem_messages_hidden
from deepchem_actinn.validation import check_model_arguments

with deepchem_messages_hidden():  # DeepChem's import-time lines are not the user's
    import deepchem as dc
    from deepchem.models.optimizers import ExponentialDecay

    # From its module: deepchem's pre-releases (Python 3.12, Colab) skip dc.models.TorchModel
    # when `transformers` is not installed, although the class itself imports fine.
    from deepchem.models.torch_models.torch_model import TorchModel


#: Keyword arguments ACTINNModel passes on to ``dc.models.TorchModel``; any other is a
#: mistake (a misspelt setting would otherwise vanish into DeepChem's ``**kwargs``).
_TORCH_MODEL_OPTIONS = {"model_dir", "log_frequency", "tensorboard", "wandb", "wandb_logger"}


def refuse_unknown_keywords(names: Iterable[str], function: str) -> None:
    """``TypeError`` naming the keywords ``ACTINNModel(**kwargs)`` does not take.

    Its settings, the training options and DeepChem's own options are known;
    ``train_reference`` asks before reading any data, the constructor on entry.
    """
    known = (set(ACTINN_DEFAULTS) | set(TRAINING_OPTIONS) | set(GENE_SELECTION_DEFAULTS)
             | _TORCH_MODEL_OPTIONS | {"preset", "classes", "featurizer", "seed", "device"})
    unknown = sorted(set(names) - known)
    if unknown:
        raise TypeError(f"{function}() got unexpected keyword argument"
                        f"{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}")


class ACTINNModel(TorchModel):
    """ACTINN cell-type classifier for DeepChem.

    Parameters
    ----------
    n_genes: int
        Number of input genes (``len(featurizer.genes_)``).
    n_classes: int
        Number of cell types.
    hidden_sizes: sequence of int
        Hidden layer widths, default ``(100, 50, 25)``.
    learning_rate: float
        Initial Adam learning rate, 1e-4.
    decay_rate, decay_steps: float, int
        Staircase exponential decay: the rate is multiplied by ``decay_rate``
        every ``decay_steps`` optimizer steps (0.95 every 1000).
    l2: float
        Weight of the L2 penalty ``l2 * sum(W**2) / 2`` on weights (0.005).
    batch_size: int
        Mini-batch size, 128.
    epochs: int
        Default number of epochs for :meth:`fit`, 50. Given explicitly, it is the
        training length: a preset's ``min_steps`` no longer raises it (pass
        ``min_steps`` too to keep a floor).
    input_dropout: float
        Dropout on the input genes (0 in ACTINN).
    preset: str
        ``"actinn"`` (the paper's settings) or ``"robust"`` (Adam at 1e-3 and
        input dropout 0.5, for references applied across datasets);
        explicit arguments override it.
    classes: sequence of str, optional
        Cell-type names, index-aligned with the outputs.
    featurizer: ScRNAFeaturizer, optional
        The fitted preprocessing; saved with the model.
    seed: int
        Seeds weight initialisation and batch shuffling.
    device: str or torch.device, optional
        ``"cpu"``, ``"cuda"``...; default: a GPU when one is present.
    **kwargs:
        The :data:`TRAINING_OPTIONS` (``min_steps``, ``label_smoothing``,
        ``class_weight``, ``linear_skip``, ``linear_l2``, ``linear_weight``,
        ``gene_dropout``) and the gene selection settings; ``model_dir`` and
        DeepChem's logging options go to ``dc.models.TorchModel``.

    Examples
    --------
    >>> import numpy as np, deepchem as dc
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(64, 20)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(int).reshape(-1, 1)
    >>> model = ACTINNModel(n_genes=20, n_classes=2, learning_rate=1e-2, batch_size=16)
    >>> _ = model.fit(dc.data.NumpyDataset(X, y), nb_epoch=30)
    >>> model.predict_proba(dc.data.NumpyDataset(X)).shape
    (64, 2)
    """

    def __init__(self, n_genes: int, n_classes: int, hidden_sizes: Optional[Sequence[int]] = None,
                 learning_rate: Optional[float] = None, decay_rate: Optional[float] = None,
                 decay_steps: Optional[int] = None, l2: Optional[float] = None,
                 batch_size: Optional[int] = None, epochs: Optional[int] = None,
                 input_dropout: Optional[float] = None, preset: str = "actinn",
                 classes: Optional[Names] = None,
                 featurizer: Optional[ScRNAFeaturizer] = None, seed: int = 0,
                 device: Optional[Union[str, torch.device]] = None, **kwargs: Any) -> None:
        check_model_arguments(n_genes=n_genes, n_classes=n_classes, hidden_sizes=hidden_sizes,
                              learning_rate=learning_rate, decay_rate=decay_rate,
                              decay_steps=decay_steps, l2=l2, batch_size=batch_size,
                              epochs=epochs, input_dropout=input_dropout, seed=seed,
                              device=device, **kwargs)
        given = {"hidden_sizes": hidden_sizes, "learning_rate": learning_rate,
                 "decay_rate": decay_rate, "decay_steps": decay_steps, "l2": l2,
                 "batch_size": batch_size, "epochs": epochs, "input_dropout": input_dropout}
        refuse_unknown_keywords(kwargs, "ACTINNModel")
        options = {k: kwargs.pop(k) for k in list(kwargs)
                   if k in TRAINING_OPTIONS or k in GENE_SELECTION_DEFAULTS}
        # A named argument left at None means "the preset's value".
        given = {k: v for k, v in given.items() if v is not None}
        if "epochs" in given and "min_steps" not in options:
            options["min_steps"] = 0  # epochs asked for are the training length, not a floor
        settings = preset_settings(preset, **given, **options)
        if featurizer is not None:
            record_gene_selection(settings, featurizer)
        if settings["class_weight"] not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', got "
                             f"{settings['class_weight']!r}")
        settings["hidden_sizes"] = tuple(int(h) for h in settings["hidden_sizes"])
        self.preset = preset
        self.settings = settings
        self.n_genes = int(n_genes)
        self.n_classes = int(n_classes)
        self.seed = int(seed)
        self.epochs = int(settings["epochs"])
        if classes is not None and len(classes) != self.n_classes:
            raise ValueError(f"{len(classes)} class names for n_classes={n_classes}")
        self.classes = np.asarray(classes if classes is not None else
                                  [str(i) for i in range(self.n_classes)], dtype=object)
        self._classes_given = classes is not None  # restore() may then take a checkpoint's
        if featurizer is not None and featurizer.genes_ is not None \
                and len(featurizer.genes_) != self.n_genes:
            raise ValueError(f"featurizer keeps {len(featurizer.genes_)} genes but "
                             f"n_genes={n_genes}")
        self.featurizer = featurizer
        generator = torch.Generator().manual_seed(self.seed)
        module = ActinnClassifier.from_settings(self.n_genes, self.n_classes, settings,
                                                generator=generator, dropout_seed=self.seed + 1)
        schedule = ExponentialDecay(float(settings["learning_rate"]),
                                    float(settings["decay_rate"]), int(settings["decay_steps"]),
                                    staircase=True)
        l2_weight = float(settings["l2"])
        smoothing = float(settings["label_smoothing"])
        super().__init__(
            module,
            loss=_SmoothedCrossEntropy(smoothing) if smoothing > 0 or settings["linear_skip"]
            else dc.models.losses.SparseSoftmaxCrossEntropy(),
            output_types=["prediction", "loss", "embedding"],
            batch_size=int(settings["batch_size"]),
            # TorchModel ignores learning_rate= when optimizer= is given: the
            # schedule must live inside the optimizer to be applied at all.
            optimizer=WeightL2Adam(
                learning_rate=schedule, l2=l2_weight,
                other_l2=None if module.skip is None or settings["linear_l2"] is None
                else {id(module.skip.weight): float(settings["linear_l2"])}),
            device=torch.device(device) if isinstance(device, str) else device,
            **kwargs)
        self._shuffle_rng = np.random.default_rng(self.seed)
        self._class_weights: Optional[np.ndarray] = None  # set by fit with class_weight
        #: Training cells per class that ``class_weight="balanced"`` weighs by; ``None``:
        #: counted from what ``fit`` is given (distributed training sets the global counts).
        self.class_counts: Optional[np.ndarray] = None
        self._guard: Optional[_DivergenceGuard] = None  # the running (or last) fit's
        # The directory load() read, recorded by annotate/to_adata for provenance.
        self.loaded_from: Optional[str] = None

    def __repr__(self) -> str:
        # TorchModel sets _global_step only once the network is built.
        shown = ", ".join(map(str, self.classes[:4])) + (", ..." if self.n_classes > 4 else "")
        return (f"<ACTINNModel preset={self.preset!r}: {self.n_genes:,} genes -> "
                f"{'-'.join(map(str, self.settings['hidden_sizes']))} -> {self.n_classes} "
                f"classes ({shown}); {getattr(self, '_global_step', 0):,} steps trained>")

    # -- hyper-parameters --------------------------------------------------------

    @property
    def hyperparameters(self) -> Dict[str, Any]:
        """Everything needed to rebuild this model (JSON-serialisable)."""
        settings = dict(self.settings)
        settings["hidden_sizes"] = list(settings["hidden_sizes"])
        return {**settings, "preset": self.preset, "seed": self.seed}

    @property
    def genes(self) -> Optional[np.ndarray]:
        """Input gene names (from the featurizer), or ``None``."""
        return None if self.featurizer is None else self.featurizer.genes_

    # -- training ------------------------------------------------------------------

    def default_generator(self, dataset: dc.data.Dataset, epochs: int = 1, mode: str = "fit",
                          deterministic: bool = True, pad_batches: bool = True
                          ) -> Iterable[Tuple[List, List, List]]:
        """Batches as ACTINN makes them: reshuffled each epoch, last batch partial.

        Shuffling uses the model's own seeded generator, so two models with
        the same seed see the same batches. Sparse ``X`` is densified one
        batch at a time.
        """
        X = getattr(dataset, "X", None)
        if X is None or not hasattr(X, "shape") or isinstance(dataset, dc.data.DiskDataset):
            for inputs, labels, weights in super().default_generator(
                    dataset, epochs, mode, deterministic, pad_batches=False):
                y_b = labels[0] if labels else None
                w_b = weights[0] if weights else None
                if y_b is not None and len(y_b):
                    y_b, w_b = self._batch_labels(np.asarray(y_b).reshape(-1, 1), w_b, mode)
                yield inputs, [y_b], [w_b]
            return
        n = X.shape[0]
        y, w = dataset.y, dataset.w
        shuffle = mode == "fit" and not deterministic
        for _ in range(epochs):
            order = self._shuffle_rng.permutation(n) if shuffle else np.arange(n)
            for start in range(0, n, self.batch_size):
                index = order[start:start + self.batch_size]
                if not shuffle:
                    index = slice(start, start + self.batch_size)  # type: ignore[assignment]
                X_b = X[index]
                if hasattr(X_b, "toarray") and getattr(dataset, "sparse_batches", False):
                    X_b = to_torch_csr(X_b, self.device)
                else:
                    X_b = np.asarray(X_b.toarray() if hasattr(X_b, "toarray") else X_b,
                                     dtype=np.float32)
                y_b = None if y is None or len(y) == 0 else np.asarray(y[index]).reshape(-1, 1)
                w_b = None if w is None or len(w) == 0 else np.asarray(w[index],
                                                                        dtype=np.float32)
                if y_b is not None:
                    y_b, w_b = self._batch_labels(y_b, w_b, mode)
                yield ([X_b], [y_b], [w_b])

    def _batch_labels(self, y_b: np.ndarray, w_b: Optional[np.ndarray], mode: str
                      ) -> Tuple[np.ndarray, np.ndarray]:
        """Class indices and weights of a batch: unknown types (-1) weigh 0, class weights."""
        y_b = y_b.astype(np.int64)
        w_b = np.ones((len(y_b), 1), np.float32) if w_b is None else np.asarray(w_b, np.float32)
        w_b = w_b.reshape(len(y_b), -1) * (y_b >= 0)
        y_b = np.maximum(y_b, 0)
        if self._class_weights is not None and mode == "fit":
            w_b = w_b * self._class_weights[y_b].astype(np.float32)
        return y_b, w_b

    def prepare_class_weights(self, dataset: Any) -> None:
        """The per-class loss weights of ``class_weight="balanced"`` (``n / (k * n_c)``) from
        :attr:`class_counts`, else the labels of ``dataset``; every training path calls it."""
        if self.settings.get("class_weight") != "balanced":
            self._class_weights = None
            return
        counts = self.class_counts if self.class_counts is not None \
            else class_counts(dataset.y, self.n_classes)
        self._class_weights = balanced_weights(counts)

    def fit(self, dataset: dc.data.Dataset, nb_epoch: Optional[int] = None,  # type: ignore[override]
            max_checkpoints_to_keep: int = 5, checkpoint_interval: int = 1000,
            deterministic: bool = False, restore: bool = False,
            variables: Optional[Any] = None, loss: Optional[Any] = None,
            callbacks: Union[Callable, List[Callable]] = [],
            all_losses: Optional[List[float]] = None) -> float:
        """Train; ``nb_epoch`` defaults to the model's ``epochs`` (50 for ACTINN).

        ``restore=True`` continues from the latest checkpoint in ``model_dir``
        (weights, optimizer, step, learning-rate schedule, batch shuffling).
        """
        if restore:
            # DeepChem restores after drawing the first batch, i.e. after this
            # epoch's shuffle; restoring first keeps the batches of an unbroken run.
            self.restore()
        summary = _raw_counts_summary(dataset)
        if summary:
            # At the user's fit() line, however deep inside the package fit was called.
            warnings.warn(f"the training cells look like raw counts ({summary}), not "
                          "ACTINN's features: fit a ScRNAFeaturizer on them and train on "
                          "deepchem_actinn.train.featurize(featurizer, dataset) (or use "
                          "train_reference, which does both)", PreprocessingWarning,
                          stacklevel=user_stacklevel())
        self.prepare_class_weights(dataset)
        if nb_epoch is None:
            nb_epoch = self.epochs_for(len(dataset))
        with warnings.catch_warnings():
            # DeepChem averages the loss tensor with float(): torch warns at every log step.
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
            return super().fit(dataset, nb_epoch=nb_epoch,
                               max_checkpoints_to_keep=max_checkpoints_to_keep,
                               checkpoint_interval=checkpoint_interval,
                               deterministic=deterministic, restore=False,
                               variables=variables, loss=loss, callbacks=callbacks,
                               all_losses=all_losses)

    def fit_generator(self, generator: Iterable[Tuple[Any, Any, Any]],
                      max_checkpoints_to_keep: int = 5, checkpoint_interval: int = 1000,
                      restore: bool = False, variables: Optional[Any] = None,
                      loss: Optional[Any] = None,
                      callbacks: Union[Callable, List[Callable]] = [],
                      all_losses: Optional[List[float]] = None) -> float:
        """DeepChem's training loop, stopped by a TrainingError at the first non-finite loss.

        A diverged run (learning rate too high) would otherwise go on with NaN
        weights and be saved as a model that calls every cell the first class.
        """
        guard = _DivergenceGuard(self._loss_fn if loss is None else loss,
                                 every=1 if self.device.type == "cpu" else 32)
        self._guard = guard
        callbacks = [callbacks] if callable(callbacks) else list(callbacks)
        result = super().fit_generator(generator, max_checkpoints_to_keep, checkpoint_interval,
                                       restore, variables, guard, [guard.check, *callbacks],
                                       all_losses)
        guard.check(self, self._global_step, final=True)
        return result

    def batch_loss_totals(self) -> Tuple[float, int]:
        """Sum and number of the batch losses DeepChem computed in the running (or last) fit.

        What progress bars average: the training loss at no extra forward pass.
        """
        return (0.0, 0) if self._guard is None else self._guard.totals()

    def steps_per_epoch(self, n_cells: int) -> int:
        return int(math.ceil(n_cells / self.batch_size))

    def epochs_for(self, n_cells: int) -> int:
        """Epochs :meth:`fit` runs by default: ``epochs``, raised to reach ``min_steps``.

        >>> ACTINNModel(5, 2, epochs=10, min_steps=100).epochs_for(256)  # 2 steps an epoch
        50
        """
        min_steps = int(self.settings.get("min_steps") or 0)
        return max(self.epochs, -(-min_steps // max(self.steps_per_epoch(n_cells), 1)))

    def current_learning_rate(self) -> float:
        """The learning rate the optimizer will use for the next step."""
        self._ensure_built()
        return float(self._pytorch_optimizer.param_groups[0]["lr"])

    def save_checkpoint(self, max_checkpoints_to_keep: int = 5,
                        model_dir: Optional[str] = None) -> None:
        """DeepChem's checkpoint plus the batch-shuffling state, the featurizer and classes.

        With the shuffling state, a run resumed from the checkpoint written at
        the end of :meth:`fit` sees the batches an uninterrupted run would, so
        it ends with the same weights. The fitted featurizer
        (:meth:`ScRNAFeaturizer.to_dict`) and the class names let a model built
        with only its sizes annotate after :meth:`restore`. The file is a
        ``torch.save`` dict of tensors and plain values (states as JSON
        strings), readable with ``weights_only=True``.
        """
        if max_checkpoints_to_keep == 0:
            return
        self._ensure_built()
        folder = self.model_dir if model_dir is None else model_dir
        os.makedirs(folder, exist_ok=True)
        data = {
            "model_state_dict": self.model.state_dict(),
            "optimizer_state_dict": self._pytorch_optimizer.state_dict(),
            "global_step": self._global_step,
            "shuffle_rng_state": json.dumps(self._shuffle_rng.bit_generator.state),
        }
        if self._classes_given:  # default names ("0", "1", ...) would contradict real ones
            data["classes"] = json.dumps([str(c) for c in self.classes])
        if self.featurizer is not None and self.featurizer.genes_ is not None:
            data["featurizer"] = json.dumps(self.featurizer.to_dict())
        dropout_rng = self.model.dropout_generator(self.device)
        if dropout_rng is not None:
            data["dropout_rng_state"] = dropout_rng.get_state()
        temporary = os.path.join(folder, "temp_checkpoint.pt")
        torch.save(data, temporary)
        # Rotate as DeepChem does; a kill in between leaves older complete checkpoints.
        paths = [os.path.join(folder, f"checkpoint{i + 1}.pt")
                 for i in range(max_checkpoints_to_keep)]
        if os.path.exists(paths[-1]):
            os.remove(paths[-1])
        for i in reversed(range(max_checkpoints_to_keep - 1)):
            if os.path.exists(paths[i]):
                os.rename(paths[i], paths[i + 1])
        os.rename(temporary, paths[0])

    def restore(self, checkpoint: Optional[str] = None, model_dir: Optional[str] = None,
                strict: Optional[bool] = True) -> None:
        """Restore a checkpoint and put the learning-rate schedule at its step.

        DeepChem's checkpoints do not save the scheduler, so without this a
        resumed run would restart the decay from step 0. The batch-shuffling
        state is restored too when the checkpoint has it, and so are the
        featurizer and the class names (:meth:`save_checkpoint`) when this
        model has none: ``ACTINNModel(n_genes, n_classes, model_dir=...)``
        then ``restore()`` gives a model ``annotate`` can use. A checkpoint
        whose genes or classes differ from this model's is refused. The file
        is read with ``torch.load(weights_only=True)``: nothing is unpickled,
        and its featurizer and classes are checked as a model file's are.
        """
        self._ensure_built()
        if checkpoint is None:
            folder = self.model_dir if model_dir is None else model_dir
            if not os.path.isdir(folder):
                raise ModelFileError("checkpoint directory not found", folder)
            checkpoints = sorted(self.get_checkpoints(folder))
            if not checkpoints:
                raise ModelFileError("no checkpoint found (checkpoint*.pt)", folder)
            checkpoint = checkpoints[0]
        try:
            data = file_format.load_tensors(checkpoint, self.device)
        except pickle.UnpicklingError as exc:
            raise ModelFileError("checkpoint holds Python objects, not only tensors: refused, "
                                 "since loading it could run code", checkpoint) from exc
        except Exception as exc:
            raise ModelFileError(f"cannot read checkpoint ({type(exc).__name__})",
                                 checkpoint) from exc
        if not isinstance(data, dict):
            raise ModelFileError("checkpoint is not a dict of states", checkpoint)
        featurizer, classes = self._checkpoint_names(data, checkpoint)
        try:
            self.model.load_state_dict(data["model_state_dict"], strict=bool(strict))
            self._pytorch_optimizer.load_state_dict(data["optimizer_state_dict"])
            self._global_step = int(data["global_step"])
            rng_state = data.get("shuffle_rng_state")
            if isinstance(rng_state, str):
                self._shuffle_rng.bit_generator.state = json.loads(rng_state)
            dropout_state = data.get("dropout_rng_state")
            dropout_rng = self.model.dropout_generator(self.device)
            if isinstance(dropout_state, torch.Tensor) and dropout_rng is not None:
                dropout_rng.set_state(dropout_state.cpu())
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"checkpoint does not fit this model ({type(exc).__name__}: "
                                 f"{str(exc)[:200]})", checkpoint) from exc
        if featurizer is not None:
            self.featurizer = featurizer
            record_gene_selection(self.settings, featurizer)
        if classes is not None:
            self.classes, self._classes_given = np.asarray(classes, dtype=object), True
        self._sync_schedule()

    def _checkpoint_names(self, data: Dict[str, Any], checkpoint: str
                          ) -> Tuple[Optional[ScRNAFeaturizer], Optional[List[str]]]:
        """The featurizer and classes of a checkpoint this model lacks (checked before any
        state changes); ModelFileError when they contradict the ones it has."""
        state, classes = file_format.checkpoint_names(data, self.n_genes, self.n_classes,
                                                     checkpoint)
        featurizer = None
        if state is not None:
            mine = self.genes
            if mine is None:
                featurizer = ScRNAFeaturizer.from_dict(state)
            elif list(mine) != state["genes"]:
                raise ModelFileError("checkpoint does not fit this model (it was trained on "
                                     "other genes than this model's featurizer keeps)",
                                     checkpoint)
        if classes is not None and self._classes_given:
            if [str(c) for c in self.classes] != classes:
                raise ModelFileError("checkpoint does not fit this model (other class names: "
                                     f"{', '.join(classes[:3])}...)", checkpoint)
            classes = None
        return featurizer, classes

    def _sync_schedule(self) -> None:
        schedule = self.optimizer.learning_rate
        rate = _schedule_value(schedule, self._global_step)
        for group in self._pytorch_optimizer.param_groups:
            group["lr"] = rate
            group["initial_lr"] = _schedule_value(schedule, 0)
        if self._lr_schedule is not None:
            self._lr_schedule.last_epoch = self._global_step
            self._lr_schedule._last_lr = [rate for _ in self._pytorch_optimizer.param_groups]

    # -- prediction ----------------------------------------------------------------

    def evaluate(self, dataset: dc.data.Dataset, metrics: Any, transformers: List = [],
                 per_task_metrics: bool = False, use_sample_weights: bool = False,
                 n_classes: Optional[int] = None) -> Any:
        """DeepChem's ``evaluate`` with ``n_classes`` defaulting to this model's.

        ``dc.models.ValidationCallback`` calls ``evaluate`` without
        ``n_classes``, which otherwise means 2 and fails for more cell types.
        """
        return super().evaluate(dataset, metrics, transformers, per_task_metrics,
                                use_sample_weights,
                                n_classes=self.n_classes if n_classes is None else n_classes)

    def fit_temperature(self, dataset: dc.data.Dataset) -> float:
        """Temperature scaling: choose ``T`` minimising the NLL of held-out labelled cells.

        Probabilities become ``softmax(logits / T)``; the most probable type
        never changes. Use cells the model was not trained on (a validation
        split), or ``T`` only learns how well the training cells were fitted.
        ``T`` is a buffer of the network, so :meth:`save` keeps it.

        Returns
        -------
        float
            The fitted temperature (also set on the model).
        """
        labels = np.asarray(dataset.y).ravel().astype(np.int64)
        known = labels >= 0
        chunks = [torch.as_tensor(z, dtype=torch.float64) for _, z, _ in
                  self.predict_blocks(dataset)]
        z = torch.cat(chunks)[torch.as_tensor(known)] if chunks else torch.zeros(0)
        target = torch.as_tensor(labels[known])
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100,
                                      line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(z / log_t.exp(), target)
            loss.backward()
            return loss

        if len(z):
            optimizer.step(closure)
        temperature = float(np.clip(math.exp(float(log_t.detach())), 0.05, 20.0))
        self.model.temperature.fill_(temperature)
        return temperature

    def predict_blocks(self, data: Any, rows: Optional[int] = None) -> Iterator[PredictionBlock]:
        """``(probabilities, logits, embedding)`` of featurised cells, one block at a time.

        The one inference path: ``predict_proba``, ``annotate``, the training
        history and ``fit_temperature`` all call it. ``data`` is a cells x
        genes matrix (dense or scipy sparse) or a dataset (its ``X``; a
        sharded one shard window after another, in order). A block holds
        ``rows`` cells (default :func:`predict_rows`: a bounded number of
        probabilities, whatever the numbers of cells and classes). Every input
        takes the same sparse path in canonical CSR form, so dense and sparse
        copies of the cells get identical numbers (dense BLAS and the sparse
        first layer sum in different orders). The network is in evaluation
        mode while a block is computed.
        """
        return predict_blocks(self.model, data, self.device, self.n_classes, rows)

    def predict_on_batch(self, X: Any, transformers: List = []) -> Any:
        """DeepChem's ``predict_on_batch`` (probabilities ``(B, 1, n_classes)``), also for a
        scipy sparse batch, densified: the same numbers as the dense batch."""
        if sp.issparse(X):
            X = X.toarray()
        return super().predict_on_batch(np.asarray(X, dtype=np.float32), transformers)

    def predict_proba(self, dataset: Any) -> np.ndarray:
        """Class probabilities, shape ``(n_cells, n_classes)`` (:meth:`predict_blocks`)."""
        blocks = [p for p, _, _ in self.predict_blocks(dataset)]
        return np.concatenate(blocks) if blocks else np.zeros((0, self.n_classes), np.float32)

    def predict_labels(self, dataset: dc.data.Dataset) -> np.ndarray:
        """The most probable cell-type name of each cell."""
        return self.classes[self.predict_proba(dataset).argmax(axis=1)]

    # -- persistence -----------------------------------------------------------------

    def save(self, directory: Union[str, os.PathLike[str]]) -> str:
        """Write this model as a self-contained reference directory.

        Files: ``actinn_model.json`` (format version, hyper-parameters,
        classes, preprocessing with its gene lists, SHA-256 of the weights)
        and ``weights.pt`` (a plain tensor ``state_dict``). The directory is
        written under a temporary name and renamed into place, so an
        interrupted save leaves the previous model or nothing.
        """
        return save_model(self, directory)

    @classmethod
    def load(cls, directory: Union[str, os.PathLike[str]],
             device: Optional[Union[str, torch.device]] = None,
             **kwargs: Any) -> ACTINNModel:
        """Rebuild a model saved by :meth:`save`, ready to predict.

        Nothing is unpickled: the metadata is JSON checked field by field
        against a schema (:mod:`deepchem_actinn.model.file_format`), the weights are
        read once, checked against their SHA-256 and deserialised from those
        bytes with ``torch.load(weights_only=True)``; both come from one state
        of the folder even while ``save`` replaces it. A directory that is not
        a model, is damaged or crafted, or comes from a newer format raises
        :class:`~deepchem_actinn.errors.ModelFileError`.
        """
        return load_model(cls, directory, device, **kwargs)
