"""Progress bars: training epochs with loss and ETA, and the out-of-core passes.

Everything that reports progress takes ``progress``: ``True`` / ``False``
force the bars on or off; ``None`` (the default of ``train_reference`` and
``train_streaming``) shows them only when someone is watching: stderr is a
terminal, or the code runs in a Jupyter kernel (where ``tqdm.auto`` draws a
widget). Bars write to stderr, never stdout, which may carry results. The
CLI shows them unless ``--quiet``.

>>> with pass_bar(3, "gene statistics", "cell", progress=False) as bar:
...     bar.update(3)
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, Optional, Tuple

#: ``True`` / ``False``: bars on / off; ``None``: on when interactive (see :func:`wanted`).
Progress = Optional[bool]

#: Seconds between refreshes (and between the loss reads that sync a GPU).
REFRESH_SECONDS = 0.5


def wanted(progress: Progress) -> bool:
    """Whether to draw bars: ``progress`` when given, else whether someone is watching."""
    if progress is not None:
        return bool(progress)
    if os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes"):
        return False  # tqdm's own switch, for runs whose stderr is kept (CI, rendered notebooks)
    if "ipykernel" in sys.modules:  # a Jupyter kernel: stderr is a pipe, but shown
        return True
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # no stderr (pythonw), or a closed one
        return False


def _tqdm() -> Any:
    """``tqdm.auto``'s class: a widget in notebooks, text elsewhere."""
    if "ipykernel" in sys.modules:
        try:
            import ipywidgets  # noqa: F401  (what the notebook widget is drawn with)
        except ImportError:  # text on stderr, without tqdm.auto's warning to install it
            from tqdm.std import tqdm as text
            return text
    from tqdm.auto import tqdm
    return tqdm


def bar(total: Optional[float], desc: str, unit: str, progress: Progress, **options: Any) -> Any:
    """A ``tqdm.auto`` bar on stderr, a silent no-op one unless :func:`wanted`."""
    tqdm = _tqdm()
    # sys.stderr looked up now, not at import: pytest and notebooks replace it.
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=True,
                mininterval=REFRESH_SECONDS, disable=not wanted(progress), **options)


def pass_bar(cells: int, desc: str, unit: str = "cell", progress: Progress = None) -> Any:
    """The bar of one pass over a file: ``cells`` in all, advanced chunk by chunk."""
    return bar(cells, desc, unit, progress, unit_scale=True)


class TrainingProgress:
    """A DeepChem ``fit`` callback drawing one bar over a training run.

    The bar advances a step at a time (a smooth ETA within long epochs) and
    reads ``epoch i/N``; its postfix holds the running mean of the batch
    losses of the current epoch (those DeepChem computed, read from
    ``model.batch_loss_totals()``: no second forward pass) and, when
    ``history`` scores validation cells, the latest validation accuracy.
    Register it after ``history``, so an epoch's score is there at its end.

    Parameters
    ----------
    epochs: int
        Epochs this ``fit`` runs.
    steps_per_epoch: int
        Optimizer steps in an epoch.
    first_step: int
        Steps the model took before (a resumed run): epochs count on from there.
    history: TrainingHistory, optional
        The recorder whose ``valid_accuracy`` is shown.
    progress: bool, optional
        See :func:`wanted`.
    """

    def __init__(self, epochs: int, steps_per_epoch: int, *, first_step: int = 0,
                 history: Any = None, progress: Progress = None) -> None:
        self.per_epoch = max(1, int(steps_per_epoch))
        self.first_epoch = int(first_step) // self.per_epoch
        self.total_epochs = self.first_epoch + int(epochs)
        self.history = history
        self.bar = bar(int(epochs) * self.per_epoch, self._epoch(min(1, int(epochs))), "step",
                       progress)
        self._mark: Tuple[float, int] = (0.0, 0)  # loss totals when this epoch began
        self._last_read = time.monotonic()
        self._shown: Dict[str, str] = {}

    def _epoch(self, number: int) -> str:
        return f"epoch {self.first_epoch + number}/{self.total_epochs}"

    def __call__(self, model: Any, step: int) -> None:
        self.bar.update(1)
        if self.bar.disable:
            return
        ended = self.bar.n % self.per_epoch == 0
        now = time.monotonic()
        if not ended and now - self._last_read < REFRESH_SECONDS:
            return  # reading the loss syncs a GPU: only as often as the bar refreshes
        self._last_read = now
        loss = self._mean_loss(model, new_epoch=ended)
        if loss is not None:
            self._shown["loss"] = f"{loss:.4f}"
        accuracy = getattr(self.history, "valid_accuracy", None)
        if getattr(self.history, "valid", None) is not None and accuracy:
            self._shown["valid_acc"] = f"{accuracy[-1]:.4f}"
        self.bar.set_postfix(self._shown, refresh=False)
        # At its end the epoch just run, whose loss is shown; within one, the running one.
        number = self.bar.n // self.per_epoch + (0 if ended else 1)
        self.bar.set_description_str(self._epoch(number), refresh=False)

    def _mean_loss(self, model: Any, new_epoch: bool) -> Optional[float]:
        """Mean batch loss since the epoch began (or of the epoch just ended)."""
        totals = getattr(model, "batch_loss_totals", None)
        if totals is None:
            return None
        total, count = totals()
        start_total, start_count = self._mark
        if new_epoch:
            self._mark = (total, count)
        return (total - start_total) / (count - start_count) if count > start_count else None

    def close(self) -> None:
        self.bar.close()
