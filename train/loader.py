"""Training batches from the uint8 image cache, prepared one step ahead on a background thread.

The thread gathers the next batch's rows of the cache (a memmap or array) into a pinned buffer and, on CUDA,
copies it to the device on a side stream, so the training step never waits for the input path. Batch b holds
the sorted indices ``order[b * batch_size : (b + 1) * batch_size]``: the same batches, in the same order, as a
plain loop would take, so runs stay reproducible.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

_DONE = object()


class BatchLoader:
    """Iterate (uint8 NHWC images, labels) device tensors for `steps` batches of `order`; use as a context manager."""

    def __init__(
        self,
        images: np.ndarray,
        labels: Tensor,
        order: np.ndarray,
        batch_size: int,
        steps: int,
        device: torch.device,
        depth: int = 2,
    ) -> None:
        self.images, self.labels, self.order = images, labels, order
        self.batch_size, self.steps, self.device = batch_size, steps, device
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="sadh-batch-loader", daemon=True)
        self._thread.start()

    def batch_index(self, b: int) -> np.ndarray:
        """The sorted cache rows of batch b."""
        return np.sort(self.order[b * self.batch_size : (b + 1) * self.batch_size])

    def _produce(self) -> None:
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None
        try:
            for b in range(self.steps):
                idx = self.batch_index(b)
                x = torch.empty((len(idx), *self.images.shape[1:]), dtype=torch.uint8, pin_memory=cuda)
                np.take(self.images, idx, axis=0, out=x.numpy())
                y = self.labels[idx]
                if cuda:
                    with torch.cuda.stream(stream):
                        x = x.to(self.device, non_blocking=True)
                        y = y.pin_memory().to(self.device, non_blocking=True)
                    stream.synchronize()
                if not self._put((x, y)):
                    return
            self._put(_DONE)
        except BaseException as e:  # handed to the training loop, which re-raises it
            self._put(e)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            x, y = item
            if self.device.type == "cuda":  # made on the loader's stream, used on the current one
                x.record_stream(torch.cuda.current_stream(self.device))
                y.record_stream(torch.cuda.current_stream(self.device))
            yield x, y

    def close(self) -> None:
        """Stop the background thread (also when the loop ends early)."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "BatchLoader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
