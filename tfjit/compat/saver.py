"""Checkpoints: `tf.train.Saver`, the `checkpoint` index file, and meta graph files.

A checkpoint is named by its prefix P (what `save` returns and `restore` takes):

    P.npz       the variables: an uncompressed NumPy `.npz` (a zip of `.npy` members, one per
                checkpoint key). It is read with `allow_pickle=False`, so loading one runs no
                code, and the zip's CRC-32s catch a damaged file.
    P.meta      the meta graph (see `meta_graph.py`), unless `write_meta_graph=False`.
    checkpoint  in P's directory: TF's text format naming the latest prefix and those kept,
                relative to the directory so it can be moved.

Every file is written to a private temporary file in the same directory, fsynced, then
renamed over its target (and the directory fsynced). The index names P only once all of
P's files are complete, and old checkpoints are deleted only after the index stops naming
them, so a crash at any moment leaves the previous checkpoint intact and indexed.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import warnings
import zipfile
from typing import Any, BinaryIO, Callable

import numpy as np

from ..errors import InvalidArgumentError, NotFoundError
from ..trace.graph import get_default_graph
from .graph_keys import GraphKeys
from .meta_graph import check_meta_graph, import_graph, meta_graph_dict, read_meta_graph_file
from .variables import Variable

DATA_SUFFIX = ".npz"
_INDEX = "checkpoint"


# -- atomic files ------------------------------------------------------------------------------
def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` so that readers see either the old file or the complete new one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make a rename durable (POSIX; other systems cannot open a directory)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_npz(f: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """The `.npz` layout `np.load` reads, without `np.savez`'s clash on keys such as 'file'."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, array in arrays.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)


def _read_npz(path: str, keys: list[str]) -> dict[str, np.ndarray]:
    """The arrays stored under `keys` (those present), CRC-checked; no pickles are loaded."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in keys if key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"checkpoint file {path} is unreadable ({e}); it may be truncated or corrupt") from None


# -- the index file ----------------------------------------------------------------------------
class CheckpointState:
    """The contents of a `checkpoint` index file (TF's `CheckpointState` proto)."""

    def __init__(self, model_checkpoint_path: str, all_model_checkpoint_paths: list[str]):
        self.model_checkpoint_path = model_checkpoint_path
        self.all_model_checkpoint_paths = list(all_model_checkpoint_paths)

    def __str__(self) -> str:
        lines = [f"model_checkpoint_path: {_quote(self.model_checkpoint_path)}"]
        lines += [f"all_model_checkpoint_paths: {_quote(p)}" for p in self.all_model_checkpoint_paths]
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"CheckpointState({self.model_checkpoint_path!r}, {self.all_model_checkpoint_paths!r})"


def _quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _parse_state(text: str) -> CheckpointState:
    latest, kept = "", []
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or key.strip() not in ("model_checkpoint_path", "all_model_checkpoint_paths"):
            raise ValueError(f"unexpected line {line!r}")
        path = json.loads(value.strip())
        if key.strip() == "model_checkpoint_path":
            latest = path
        else:
            kept.append(path)
    return CheckpointState(latest, kept)


def get_checkpoint_state(checkpoint_dir: str, latest_filename: str | None = None) -> CheckpointState | None:
    """The index of `checkpoint_dir` with paths made absolute, or None without (a valid) one."""
    path = os.path.join(checkpoint_dir, latest_filename or _INDEX)
    try:
        with open(path, encoding="utf-8") as f:
            state = _parse_state(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        warnings.warn(f"{path}: {e}; checkpoint index ignored", stacklevel=2)
        return None
    if not state.model_checkpoint_path:
        warnings.warn(f"{path} names no model_checkpoint_path; checkpoint index ignored", stacklevel=2)
        return None
    return CheckpointState(_absolute(state.model_checkpoint_path, checkpoint_dir),
                           [_absolute(p, checkpoint_dir) for p in state.all_model_checkpoint_paths])


def _absolute(path: str, directory: str) -> str:
    return path if os.path.isabs(path) else os.path.join(directory, path)


def update_checkpoint_state(save_dir: str, model_checkpoint_path: str,
                            all_model_checkpoint_paths: list[str] | None = None,
                            latest_filename: str | None = None) -> None:
    """Atomically rewrite the index of `save_dir`; the latest path is always among those kept."""
    kept = [p for p in (all_model_checkpoint_paths or []) if p != model_checkpoint_path]
    kept.append(model_checkpoint_path)
    state = CheckpointState(_relative(model_checkpoint_path, save_dir), [_relative(p, save_dir) for p in kept])
    text = str(state).encode("utf-8")
    atomic_write(os.path.join(save_dir, latest_filename or _INDEX), lambda f: f.write(text))


def _relative(path: str, directory: str) -> str:
    """`path` relative to `directory` when it lies directly inside it, else as given."""
    inside = os.path.dirname(os.path.abspath(path)) == os.path.abspath(directory)
    return os.path.basename(path) if inside else path


def checkpoint_exists(checkpoint_prefix: str) -> bool:
    return os.path.isfile(checkpoint_prefix + DATA_SUFFIX)


def latest_checkpoint(checkpoint_dir: str, latest_filename: str | None = None) -> str | None:
    """The prefix of the newest checkpoint in `checkpoint_dir`, if its files exist."""
    state = get_checkpoint_state(checkpoint_dir, latest_filename)
    if state is None or not checkpoint_exists(state.model_checkpoint_path):
        return None
    return state.model_checkpoint_path


# -- Saver -------------------------------------------------------------------------------------
class Saver:
    """Saves and restores variables (all global variables by default) as checkpoints."""

    def __init__(self, var_list: Any = None, reshape: bool = False, sharded: bool = False,
                 max_to_keep: int | None = 5, keep_checkpoint_every_n_hours: float = 10000.0,
                 name: str | None = None, restore_sequentially: bool = False, saver_def: Any = None,
                 builder: Any = None, defer_build: bool = False, allow_empty: bool = False,
                 write_version: int = 2, pad_step_number: bool = False,
                 save_relative_paths: bool = False, filename: str | None = None):
        self._graph = get_default_graph()
        self._var_list = _saveables(var_list, self._graph)
        if not self._var_list and not allow_empty:
            raise ValueError("No variables to save")
        self._reshape = reshape
        self._max_to_keep = max_to_keep
        self._keep_every_s = keep_checkpoint_every_n_hours * 3600.0
        self._next_keep_time = time.time() + self._keep_every_s
        self._pad_step_number = pad_step_number
        self._last_checkpoints: list[tuple[str, float]] = []
        self._to_delete: list[tuple[str, float]] = []

    @property
    def last_checkpoints(self) -> list[str]:
        """The prefixes of the checkpoints kept, oldest first."""
        return [p for p, _ in self._last_checkpoints]

    # -- saving --------------------------------------------------------------------------------
    def save(self, sess: Any, save_path: str, global_step: Any = None, latest_filename: str | None = None,
             meta_graph_suffix: str = "meta", write_meta_graph: bool = True, write_state: bool = True,
             strip_default_attrs: bool = False, save_debug_info: bool = False) -> str:
        """Write a checkpoint of the variables' values in `sess`; returns its prefix."""
        latest_filename = latest_filename or _INDEX
        if os.path.split(latest_filename)[0]:
            raise ValueError("'latest_filename' must not contain path components")
        directory = os.path.dirname(save_path) or "."
        if not os.path.isdir(directory):
            raise ValueError(f"Parent directory of {save_path} doesn't exist, can't save.")
        prefix = self._prefix(sess, save_path, global_step)
        values = self._read(sess)
        atomic_write(prefix + DATA_SUFFIX, lambda f: _write_npz(f, values))
        if write_meta_graph:
            self.export_meta_graph(f"{prefix}.{meta_graph_suffix}")
        if write_state:
            self._record(prefix)
            update_checkpoint_state(directory, prefix, self.last_checkpoints, latest_filename)
            self._delete_old(meta_graph_suffix)
        return prefix

    def _prefix(self, sess: Any, save_path: str, global_step: Any) -> str:
        if global_step is None:
            return save_path
        if not isinstance(global_step, (int, np.integer)):
            global_step = int(sess.run(global_step))
        return f"{save_path}-{global_step:08d}" if self._pad_step_number else f"{save_path}-{global_step}"

    def _read(self, sess: Any) -> dict[str, np.ndarray]:
        self._check_session(sess)
        keys = list(self._var_list)
        values = sess.run([self._var_list[k].value() for k in keys])
        return {k: np.asarray(v) for k, v in zip(keys, values)}

    def _record(self, prefix: str) -> None:
        """Remember `prefix` as the newest checkpoint; the oldest beyond `max_to_keep` go."""
        self._last_checkpoints = [(p, t) for p, t in self._last_checkpoints if p != prefix]
        self._last_checkpoints.append((prefix, time.time()))
        if self._max_to_keep and len(self._last_checkpoints) > self._max_to_keep:
            self._to_delete.append(self._last_checkpoints.pop(0))

    def _delete_old(self, meta_graph_suffix: str) -> None:
        """Delete dropped checkpoints, keeping one every `keep_checkpoint_every_n_hours`."""
        while self._to_delete:
            prefix, stamp = self._to_delete.pop(0)
            if stamp > self._next_keep_time:
                self._next_keep_time += self._keep_every_s
                continue
            for path in (prefix + DATA_SUFFIX, f"{prefix}.{meta_graph_suffix}"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)

    # -- restoring -----------------------------------------------------------------------------
    def restore(self, sess: Any, save_path: str | None) -> None:
        """Load every variable from the checkpoint `save_path`, or none if any does not match."""
        if save_path is None:
            raise ValueError("Can't load save_path when it is None.")
        if not checkpoint_exists(save_path):
            raise ValueError(f"The passed save_path is not a valid checkpoint: {save_path}")
        self._check_session(sess)
        stored = _read_npz(save_path + DATA_SUFFIX, list(self._var_list))
        missing = [k for k in self._var_list if k not in stored]
        checked = [self._mismatch(k, v, stored[k]) for k, v in self._var_list.items() if k in stored]
        mismatched = [message for message in checked if message]
        if missing or mismatched:
            raise _restore_error(save_path, missing, mismatched, len(self._var_list))
        for key, var in self._var_list.items():
            value = stored[key]
            if self._reshape and var.shape.is_fully_defined():
                value = value.reshape(var.shape.as_list())
            sess._load_variable(var, value)

    def _mismatch(self, key: str, var: Variable, value: np.ndarray) -> str | None:
        want = var.dtype.np_dtype
        if value.dtype != want:
            return f"{key}: dtype {var.dtype.name} in the graph, {value.dtype} in the checkpoint"
        shape = var.shape
        if self._reshape and shape.is_fully_defined():
            if shape.num_elements() != value.size:
                return f"{key}: {shape.num_elements()} elements in the graph, {value.size} in the checkpoint"
        elif not shape.is_compatible_with(list(value.shape)):
            return f"{key}: shape {shape} in the graph, {tuple(value.shape)} in the checkpoint"
        return None

    def _check_session(self, sess: Any) -> None:
        if sess.graph is not self._graph:
            raise ValueError("The Saver's variables belong to another graph than the session's.")

    # -- meta graphs ---------------------------------------------------------------------------
    def export_meta_graph(self, filename: str | None = None, collection_list: list[str] | None = None,
                          as_text: bool = False, export_scope: str | None = None,
                          clear_devices: bool = False, clear_extra: bool = False,
                          strip_default_attrs: bool = False, save_debug_info: bool = False) -> dict[str, Any]:
        """The graph, its collections and this Saver as a meta graph (written to `filename`)."""
        return export_meta_graph(filename, collection_list=collection_list, graph=self._graph,
                                 clear_devices=clear_devices, saver_info=self._info())

    def _info(self) -> dict[str, Any]:
        return {"var_list": {k: v.op.name for k, v in self._var_list.items()},
                "max_to_keep": self._max_to_keep,
                "keep_checkpoint_every_n_hours": self._keep_every_s / 3600.0}


def _saveables(var_list: Any, graph: Any) -> dict[str, Variable]:
    """Checkpoint key -> variable: a dict as given, a list keyed by the variables' names."""
    if var_list is None:
        var_list = graph.get_collection(GraphKeys.GLOBAL_VARIABLES)
    pairs = list(var_list.items()) if isinstance(var_list, dict) else [(None, v) for v in var_list]
    out: dict[str, Variable] = {}
    for key, var in pairs:
        if not isinstance(var, Variable):
            raise TypeError(f"Variable to save is not a Variable: {var!r}")
        key = key if key is not None else var.op.name
        if key in out:
            raise ValueError(f"At least two variables have the same name: {key}")
        out[key] = var
    return out


def _restore_error(path: str, missing: list[str], mismatched: list[str], total: int) -> Exception:
    lines = mismatched + [f"{k}: not found in the checkpoint" for k in missing]
    message = (f"Restoring from checkpoint {path} failed: {len(lines)} of {total} variables do not match "
               "the checkpoint (nothing was restored):\n  " + "\n  ".join(lines))
    error = NotFoundError if not mismatched else InvalidArgumentError
    return error(None, None, message)


# -- meta graph files --------------------------------------------------------------------------
def export_meta_graph(filename: str | None = None, collection_list: list[str] | None = None,
                      graph: Any = None, clear_devices: bool = False,
                      saver_info: dict[str, Any] | None = None, **unused: Any) -> dict[str, Any]:
    """The meta graph of `graph` (default: the default graph); written atomically to `filename`."""
    data = meta_graph_dict(graph, collection_list, saver=saver_info, clear_devices=clear_devices)
    if filename:
        text = json.dumps(data, indent=1).encode("utf-8")
        atomic_write(filename, lambda f: f.write(text))
    return data


def import_meta_graph(meta_graph_or_file: Any, clear_devices: bool = False, import_scope: str | None = None,
                      **unused: Any) -> Saver | None:
    """Rebuild a meta graph in the default graph; returns a Saver for its variables (None if none)."""
    data = (check_meta_graph(meta_graph_or_file, "the meta graph") if isinstance(meta_graph_or_file, dict)
            else read_meta_graph_file(meta_graph_or_file))
    graph = get_default_graph()
    variables = import_graph(data, graph, import_scope, clear_devices)
    info = data.get("saver")
    if info:
        return Saver({key: variables[name] for key, name in info["var_list"].items()},
                     max_to_keep=info["max_to_keep"],
                     keep_checkpoint_every_n_hours=info["keep_checkpoint_every_n_hours"])
    global_ids = {id(v) for v in graph.get_collection(GraphKeys.GLOBAL_VARIABLES)}
    saved = {name: v for name, v in variables.items() if id(v) in global_ids}
    return Saver(saved) if saved else None
