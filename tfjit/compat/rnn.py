"""RNN cells (`tf.nn.rnn_cell`, `tf.contrib.rnn`), `static_rnn` and `dynamic_rnn` (issue 6;
exported into tf.nn).

The cells follow TF 1.x's `rnn_cell_impl` exactly: the same gate order in the concatenated
kernel, the same variable names (`<scope>/basic_lstm_cell/kernel`, `.../bias`), the same
initializers, and variables created on the first call under the variable scope current then.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import re
from typing import Any, Callable, Iterator, Sequence

from ..ir.types import DType, as_dtype, int32
from ..trace.graph import get_default_graph
from ..trace.tensor import Tensor, TensorShape, convert_to_tensor
from . import array_ops, cnn, initializers, layout_ops, math_ops, nn_ops
from .cond_while import loop
from .variables import Variable, get_variable, variable_scope

__all__ = ["rnn_cell", "static_rnn", "dynamic_rnn", "bidirectional_dynamic_rnn"]


# -- nested structures (tuples, lists, namedtuples such as LSTMStateTuple) ------------------------
def _is_nested(x: Any) -> bool:
    return isinstance(x, (tuple, list))


def flatten(structure: Any) -> list[Any]:
    """The leaves of a nest of tuples and lists, depth first."""
    if not _is_nested(structure):
        return [structure]
    return [leaf for item in structure for leaf in flatten(item)]


def pack_sequence_as(structure: Any, flat: Sequence[Any]) -> Any:
    """The nest `structure` with its leaves replaced by `flat`, in order."""
    leaves = iter(flat)
    packed = _pack(structure, leaves)
    if next(leaves, None) is not None:
        raise ValueError(f"Too many leaves for structure {structure!r}")
    return packed


def _pack(structure: Any, leaves: Iterator[Any]) -> Any:
    if not _is_nested(structure):
        return next(leaves)
    items = [_pack(item, leaves) for item in structure]
    if hasattr(structure, "_fields"):  # a namedtuple
        return type(structure)(*items)
    return type(structure)(items)


def map_structure(fn: Callable[..., Any], *structures: Any) -> Any:
    flats = [flatten(s) for s in structures]
    if any(len(f) != len(flats[0]) for f in flats):
        raise ValueError(f"The structures {structures!r} do not match")
    return pack_sequence_as(structures[0], [fn(*leaves) for leaves in zip(*flats)])


# -- state and cell basics ------------------------------------------------------------------------
class LSTMStateTuple(collections.namedtuple("LSTMStateTuple", ("c", "h"))):
    """The (c, h) state of an LSTM cell: memory first, output second."""

    __slots__ = ()

    @property
    def dtype(self) -> DType:
        c, h = self
        if c.dtype != h.dtype:
            raise TypeError(f"Inconsistent internal state: {c.dtype} vs {h.dtype}")
        return c.dtype


def _snake_case(name: str) -> str:
    """The layer names TF derives from class names (`BasicLSTMCell` -> `basic_lstm_cell`)."""
    s1 = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", s1).lower()


def _activation(activation: Any) -> Callable[[Tensor], Tensor]:
    """A callable, a name of a `tf.nn` activation (as Keras' `activations.get`), or tanh."""
    if not activation:
        return math_ops.tanh
    if isinstance(activation, str):
        from . import nn  # here: tf.nn imports this module

        return getattr(nn, activation)
    return activation


def _check_float(*tensors: Any) -> None:
    for t in flatten(tensors):
        if not t.dtype.is_floating:
            raise ValueError(f"RNN cell only supports floating point inputs, but saw dtype: {t.dtype.name}")


def _state_shape(batch_size: Any, size: Any) -> list[Any]:
    """[batch_size, *size] for an int or a shape-like `size`; batch_size may be a tensor."""
    dims = [size] if isinstance(size, int) else list(TensorShape(size).as_list())
    return [batch_size, *dims]


def _zero_state_tensors(state_size: Any, batch_size: Any, dtype: Any) -> Any:
    """Zeros [batch_size, s] for each leaf s of the (nested) state size."""
    leaves = [array_ops.zeros(_state_shape(batch_size, s), dtype) for s in flatten(state_size)]
    return pack_sequence_as(state_size, leaves)


class RNNCell:
    """An RNN cell: `output, new_state = cell(inputs, state)` with `state_size`, `output_size`.

    As TF's cells are Layers: variables are made by `build(inputs_shape)` on the first call,
    in a variable scope named after the class (made unique in the scope it is first called
    in) and reused on every later call. A subclass that makes variables in `call` with
    `tf.get_variable` gets its scope re-entered with reuse on later calls.
    """

    def __init__(self, trainable: bool = True, name: str | None = None, dtype: Any = None,
                 _reuse: Any = None, **unused: Any):
        self.trainable = trainable
        self.dtype = as_dtype(dtype) if dtype is not None else None
        self._name = name
        self._base_name = name or _snake_case(type(self).__name__)
        self._reuse = _reuse
        self._scope: Any = None
        self._weights: list[Variable] = []
        self.built = False

    @property
    def name(self) -> str:
        return self._base_name

    @property
    def state_size(self) -> Any:
        raise NotImplementedError("Abstract method")

    @property
    def output_size(self) -> Any:
        raise NotImplementedError("Abstract method")

    @property
    def variables(self) -> list[Variable]:
        return list(self._weights)

    @property
    def weights(self) -> list[Variable]:
        return self.variables

    @property
    def trainable_variables(self) -> list[Variable]:
        return [v for v in self._weights if v.trainable] if self.trainable else []

    @property
    def trainable_weights(self) -> list[Variable]:
        return self.trainable_variables

    def build(self, inputs_shape: Any) -> None:
        self.built = True

    def call(self, inputs: Any, state: Any) -> tuple[Any, Any]:
        raise NotImplementedError("Abstract method")

    def __call__(self, inputs: Any, state: Any, scope: Any = None) -> tuple[Any, Any]:
        inputs = map_structure(convert_to_tensor, inputs)
        with self._cell_scope(scope):
            if self.dtype is None:
                self.dtype = flatten(inputs)[0].dtype
            if not self.built:
                self.build(flatten(inputs)[0].shape)
                self.built = True
            return self.call(inputs, state)

    @contextlib.contextmanager
    def _cell_scope(self, scope: Any) -> Iterator[None]:
        """The first call opens (and keeps) the cell's scope; later calls re-enter it with reuse."""
        if self._scope is not None:
            with variable_scope(self._scope, reuse=True):
                yield
            return
        if scope is not None:
            opened = variable_scope(scope, reuse=self._reuse)
        elif self._reuse:
            opened = variable_scope(self._base_name, reuse=True)
        else:
            opened = variable_scope(None, default_name=self._base_name)
        with opened as vs:
            self._scope = vs
            yield

    def add_variable(self, name: str, shape: Any, initializer: Any = None, dtype: Any = None,
                     trainable: bool = True) -> Variable:
        """`tf.get_variable(name)` in the cell's scope, remembered as one of its weights."""
        var = get_variable(name, shape, dtype=dtype or self.dtype, initializer=initializer,
                           trainable=trainable and self.trainable)
        if all(var is not w for w in self._weights):
            self._weights.append(var)
        return var

    add_weight = add_variable

    def _input_depth(self, inputs_shape: Any) -> int:
        depth = TensorShape(inputs_shape)[-1].value
        if depth is None:
            raise ValueError(f"Expected inputs.shape[-1] to be known, saw shape: {TensorShape(inputs_shape)}")
        return depth

    def zero_state(self, batch_size: Any, dtype: Any) -> Any:
        """Zeros of shape [batch_size, s] for each s in `state_size` (batch_size may be a tensor)."""
        with get_default_graph().name_scope(type(self).__name__ + "ZeroState"):
            return _zero_state_tensors(self.state_size, batch_size, as_dtype(dtype))

    def get_initial_state(self, inputs: Any = None, batch_size: Any = None, dtype: Any = None) -> Any:
        if inputs is not None:
            inputs = convert_to_tensor(inputs)
            batch_size = inputs.shape[0].value or array_ops.shape(inputs)[0]
            dtype = inputs.dtype
        if batch_size is None or dtype is None:
            raise ValueError("batch_size and dtype cannot be None while constructing initial state: "
                             f"batch_size={batch_size}, dtype={dtype}")
        return self.zero_state(batch_size, dtype)


LayerRNNCell = RNNCell


def _linear(inputs: Tensor, state: Tensor, kernel: Variable, bias: Variable) -> Tensor:
    """concat([inputs, state], 1) @ kernel + bias, the product every TF cell starts with."""
    joined = layout_ops.concat([inputs, state], 1)
    return nn_ops.bias_add(math_ops.matmul(joined, kernel), bias)


class BasicRNNCell(RNNCell):
    """output = new_state = activation(W [inputs, state] + b)."""

    def __init__(self, num_units: int, activation: Any = None, reuse: Any = None, name: str | None = None,
                 dtype: Any = None, **kwargs: Any):
        super().__init__(_reuse=reuse, name=name, dtype=dtype, **kwargs)
        self._num_units = num_units
        self._activation = _activation(activation)

    @property
    def state_size(self) -> int:
        return self._num_units

    @property
    def output_size(self) -> int:
        return self._num_units

    def build(self, inputs_shape: Any) -> None:
        depth = self._input_depth(inputs_shape)
        self._kernel = self.add_variable("kernel", [depth + self._num_units, self._num_units])
        self._bias = self.add_variable("bias", [self._num_units], initializers.Zeros(self.dtype))

    def call(self, inputs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        _check_float(inputs, state)
        output = self._activation(_linear(inputs, state, self._kernel, self._bias))
        return output, output


class GRUCell(RNNCell):
    """TF's GRU: gates r, u from `gates/kernel` (bias initialised to 1), candidate from
    `candidate/kernel` applied to [inputs, r * state]; new_h = u * state + (1 - u) * c."""

    def __init__(self, num_units: int, activation: Any = None, reuse: Any = None,
                 kernel_initializer: Any = None, bias_initializer: Any = None, name: str | None = None,
                 dtype: Any = None, **kwargs: Any):
        super().__init__(_reuse=reuse, name=name, dtype=dtype, **kwargs)
        self._num_units = num_units
        self._activation = _activation(activation)
        self._kernel_initializer = kernel_initializer
        self._bias_initializer = bias_initializer

    @property
    def state_size(self) -> int:
        return self._num_units

    @property
    def output_size(self) -> int:
        return self._num_units

    def build(self, inputs_shape: Any) -> None:
        depth, n = self._input_depth(inputs_shape), self._num_units
        bias_init = self._bias_initializer
        self._gate_kernel = self.add_variable("gates/kernel", [depth + n, 2 * n], self._kernel_initializer)
        self._gate_bias = self.add_variable("gates/bias", [2 * n], bias_init or initializers.Constant(1.0, self.dtype))
        self._candidate_kernel = self.add_variable("candidate/kernel", [depth + n, n], self._kernel_initializer)
        self._candidate_bias = self.add_variable("candidate/bias", [n], bias_init or initializers.Zeros(self.dtype))

    def call(self, inputs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        _check_float(inputs, state)
        value = math_ops.sigmoid(_linear(inputs, state, self._gate_kernel, self._gate_bias))
        r, u = layout_ops.split(value, 2, axis=1)
        c = self._activation(_linear(inputs, r * state, self._candidate_kernel, self._candidate_bias))
        new_h = u * state + (1 - u) * c
        return new_h, new_h


class BasicLSTMCell(RNNCell):
    """TF's basic LSTM: gates i, j, f, o (in that order in `kernel`), forget_bias added to f."""

    def __init__(self, num_units: int, forget_bias: float = 1.0, state_is_tuple: bool = True,
                 activation: Any = None, reuse: Any = None, name: str | None = None, dtype: Any = None,
                 **kwargs: Any):
        super().__init__(_reuse=reuse, name=name, dtype=dtype, **kwargs)
        self._num_units = num_units
        self._forget_bias = forget_bias
        self._state_is_tuple = state_is_tuple
        self._activation = _activation(activation)

    @property
    def state_size(self) -> Any:
        n = self._num_units
        return LSTMStateTuple(n, n) if self._state_is_tuple else 2 * n

    @property
    def output_size(self) -> int:
        return self._num_units

    def build(self, inputs_shape: Any) -> None:
        depth, n = self._input_depth(inputs_shape), self._num_units
        self._kernel = self.add_variable("kernel", [depth + n, 4 * n])
        self._bias = self.add_variable("bias", [4 * n], initializers.Zeros(self.dtype))

    def call(self, inputs: Tensor, state: Any) -> tuple[Tensor, Any]:
        _check_float(inputs, state)
        c, h = state if self._state_is_tuple else layout_ops.split(state, 2, axis=1)
        gates = _linear(inputs, h, self._kernel, self._bias)
        i, j, f, o = layout_ops.split(gates, 4, axis=1)
        forget_bias = array_ops.constant(self._forget_bias, dtype=f.dtype)
        sig, act = math_ops.sigmoid, self._activation
        new_c = math_ops.add(math_ops.multiply(c, sig(math_ops.add(f, forget_bias))),
                             math_ops.multiply(sig(i), act(j)))
        new_h = math_ops.multiply(act(new_c), sig(o))
        new_state = LSTMStateTuple(new_c, new_h) if self._state_is_tuple else layout_ops.concat([new_c, new_h], 1)
        return new_h, new_state


class LSTMCell(RNNCell):
    """TF's full LSTM: optional peepholes (`w_f_diag`, `w_i_diag`, `w_o_diag`), cell clipping
    and a projection (`projection/kernel`) of the output to `num_proj` units."""

    def __init__(self, num_units: int, use_peepholes: bool = False, cell_clip: float | None = None,
                 initializer: Any = None, num_proj: int | None = None, proj_clip: float | None = None,
                 num_unit_shards: int | None = None, num_proj_shards: int | None = None,
                 forget_bias: float = 1.0, state_is_tuple: bool = True, activation: Any = None,
                 reuse: Any = None, name: str | None = None, dtype: Any = None, **kwargs: Any):
        super().__init__(_reuse=reuse, name=name, dtype=dtype, **kwargs)
        if num_unit_shards is not None or num_proj_shards is not None:
            raise ValueError("num_unit_shards and num_proj_shards (partitioned variables) are not "
                             "supported; leave them None")
        self._num_units = num_units
        self._use_peepholes = use_peepholes
        self._cell_clip = cell_clip
        self._initializer = initializer
        self._num_proj = num_proj
        self._proj_clip = proj_clip
        self._forget_bias = forget_bias
        self._state_is_tuple = state_is_tuple
        self._activation = _activation(activation)
        m = num_proj or num_units
        self._state_size = LSTMStateTuple(num_units, m) if state_is_tuple else num_units + m
        self._output_size = m

    @property
    def state_size(self) -> Any:
        return self._state_size

    @property
    def output_size(self) -> int:
        return self._output_size

    def build(self, inputs_shape: Any) -> None:
        depth, n, init = self._input_depth(inputs_shape), self._num_units, self._initializer
        self._kernel = self.add_variable("kernel", [depth + self._output_size, 4 * n], init)
        self._bias = self.add_variable("bias", [4 * n], initializers.Zeros(self.dtype))
        if self._use_peepholes:
            self._w_f_diag = self.add_variable("w_f_diag", [n], init)
            self._w_i_diag = self.add_variable("w_i_diag", [n], init)
            self._w_o_diag = self.add_variable("w_o_diag", [n], init)
        if self._num_proj is not None:
            self._proj_kernel = self.add_variable("projection/kernel", [n, self._num_proj], init)

    def call(self, inputs: Tensor, state: Any) -> tuple[Tensor, Any]:
        _check_float(inputs, state)
        n, sig, act = self._num_units, math_ops.sigmoid, self._activation
        if self._state_is_tuple:
            c_prev, m_prev = state
        else:
            c_prev = layout_ops.slice(state, [0, 0], [-1, n])
            m_prev = layout_ops.slice(state, [0, n], [-1, self._output_size])
        i, j, f, o = layout_ops.split(_linear(inputs, m_prev, self._kernel, self._bias), 4, axis=1)
        if self._use_peepholes:
            c = (sig(f + self._forget_bias + self._w_f_diag * c_prev) * c_prev
                 + sig(i + self._w_i_diag * c_prev) * act(j))
        else:
            c = sig(f + self._forget_bias) * c_prev + sig(i) * act(j)
        if self._cell_clip is not None:
            c = math_ops.clip_by_value(c, -self._cell_clip, self._cell_clip)
        m = sig(o + self._w_o_diag * c) * act(c) if self._use_peepholes else sig(o) * act(c)
        if self._num_proj is not None:
            m = math_ops.matmul(m, self._proj_kernel)
            if self._proj_clip is not None:
                m = math_ops.clip_by_value(m, -self._proj_clip, self._proj_clip)
        new_state = LSTMStateTuple(c, m) if self._state_is_tuple else layout_ops.concat([c, m], 1)
        return m, new_state


# -- wrappers and stacks --------------------------------------------------------------------------
class _Wrapper(RNNCell):
    """A cell around another: no scope of its own, the wrapped cell's sizes and zero state."""

    def __init__(self, cell: RNNCell, **kwargs: Any):
        super().__init__(**kwargs)
        self.cell = cell

    @property
    def wrapped_cell(self) -> RNNCell:
        return self.cell

    @property
    def state_size(self) -> Any:
        return self.cell.state_size

    @property
    def output_size(self) -> Any:
        return self.cell.output_size

    @property
    def variables(self) -> list[Variable]:
        return self.cell.variables

    @property
    def trainable_variables(self) -> list[Variable]:
        return self.cell.trainable_variables

    def zero_state(self, batch_size: Any, dtype: Any) -> Any:
        with get_default_graph().name_scope(type(self).__name__ + "ZeroState"):
            return self.cell.zero_state(batch_size, dtype)


def _default_dropout_state_filter(state: Any) -> Any:
    """TF never drops out the memory `c` of an LSTMStateTuple."""
    if isinstance(state, LSTMStateTuple):
        return LSTMStateTuple(False, True)
    return True


class DropoutWrapper(_Wrapper):
    """Dropout on the cell's inputs, outputs and (except LSTM memory) states, a new mask each
    call; a keep probability that is the constant 1 adds no op."""

    def __init__(self, cell: RNNCell, input_keep_prob: Any = 1.0, output_keep_prob: Any = 1.0,
                 state_keep_prob: Any = 1.0, variational_recurrent: bool = False, input_size: Any = None,
                 dtype: Any = None, seed: int | None = None, dropout_state_filter_visitor: Any = None,
                 **kwargs: Any):
        super().__init__(cell, dtype=dtype, **kwargs)
        if variational_recurrent:
            raise ValueError("DropoutWrapper(variational_recurrent=True) is not supported; a new "
                             "mask is drawn at every step")
        if dropout_state_filter_visitor is not None and not callable(dropout_state_filter_visitor):
            raise TypeError("dropout_state_filter_visitor must be callable")
        self._state_filter = dropout_state_filter_visitor or _default_dropout_state_filter
        self._seed = seed
        with get_default_graph().name_scope("DropoutWrapperInit"):
            self._input_keep_prob = _keep_prob(input_keep_prob, "input_keep_prob")
            self._state_keep_prob = _keep_prob(state_keep_prob, "state_keep_prob")
            self._output_keep_prob = _keep_prob(output_keep_prob, "output_keep_prob")

    def _gen_seed(self, salt_prefix: str, index: int) -> int | None:
        """TF's per-tensor seed: md5 of the seed and a salt, so each tensor gets its own mask."""
        if self._seed is None:
            return None
        digest = hashlib.md5(f"{self._seed}{salt_prefix}_{index}".encode("utf-8")).hexdigest()
        return int(digest[:8], 16) & 0x7FFFFFFF

    def _dropout(self, values: Any, salt: str, keep_prob: Any, flags: list[bool] | None = None) -> Any:
        flags = flags if flags is not None else [True] * len(flatten(values))
        leaves = [_dropout(v, keep_prob, self._gen_seed(salt, i)) if do else v
                  for i, (do, v) in enumerate(zip(flags, flatten(values)))]
        return pack_sequence_as(values, leaves)

    def __call__(self, inputs: Any, state: Any, scope: Any = None) -> tuple[Any, Any]:
        if _should_dropout(self._input_keep_prob):
            inputs = self._dropout(inputs, "input", self._input_keep_prob)
        output, new_state = self.cell(inputs, state, scope=scope)
        if _should_dropout(self._state_keep_prob):
            flags = _state_flags(self._state_filter, new_state)
            new_state = self._dropout(new_state, "state", self._state_keep_prob, flags)
        if _should_dropout(self._output_keep_prob):
            output = self._dropout(output, "output", self._output_keep_prob)
        return output, new_state


def _keep_prob(prob: Any, what: str) -> Any:
    """A Python float when the probability is known while building, else its tensor."""
    value = math_ops.constant_value(prob)
    if value is None:
        return convert_to_tensor(prob)
    if value < 0 or value > 1:
        raise ValueError(f"Parameter {what} must be between 0 and 1: {float(value)}")
    return float(value)


def _should_dropout(p: Any) -> bool:
    return not isinstance(p, float) or p < 1


def _state_flags(visitor: Callable[[Any], Any], state: Any) -> list[bool]:
    """One flag per state leaf, whether to drop it out: the visitor's verdict on a nest (True
    looks inside, False spares all of it) or a structure of verdicts for its parts, as TF's
    `get_traverse_shallow_structure`."""
    verdict = visitor(state)
    if not _is_nested(state):
        return [bool(verdict)]
    verdicts = [verdict] * len(state) if isinstance(verdict, bool) else list(verdict)
    return [flag for v, part in zip(verdicts, state)
            for flag in (_state_flags(visitor, part) if v else [False] * len(flatten(part)))]


def _dropout(x: Tensor, keep_prob: Any, seed: int | None) -> Tensor:
    """`tf.nn.dropout(x, rate=1 - keep_prob)`, as TF's wrapper calls it."""
    return cnn.dropout(x, rate=1 - keep_prob, seed=seed)


class MultiRNNCell(RNNCell):
    """Cells stacked in order, each called in variable scope `cell_<i>`; the state is a tuple
    of the cells' states (or their concatenation when state_is_tuple=False)."""

    def __init__(self, cells: Sequence[RNNCell], state_is_tuple: bool = True):
        super().__init__()
        if not cells:
            raise ValueError("Must specify at least one cell for MultiRNNCell.")
        if not _is_nested(cells):
            raise TypeError(f"cells must be a list or tuple, but saw: {cells}.")
        self._cells = list(cells)
        self._state_is_tuple = state_is_tuple
        if not state_is_tuple and any(_is_nested(c.state_size) for c in self._cells):
            raise ValueError("Some cells return tuples of states, but the flag state_is_tuple is not set.  "
                             f"State sizes are: {[c.state_size for c in self._cells]}")

    @property
    def state_size(self) -> Any:
        if self._state_is_tuple:
            return tuple(cell.state_size for cell in self._cells)
        return sum(cell.state_size for cell in self._cells)

    @property
    def output_size(self) -> Any:
        return self._cells[-1].output_size

    @property
    def variables(self) -> list[Variable]:
        return [v for cell in self._cells for v in cell.variables]

    @property
    def trainable_variables(self) -> list[Variable]:
        return [v for cell in self._cells for v in cell.trainable_variables] if self.trainable else []

    def zero_state(self, batch_size: Any, dtype: Any) -> Any:
        with get_default_graph().name_scope(type(self).__name__ + "ZeroState"):
            if self._state_is_tuple:
                return tuple(cell.zero_state(batch_size, dtype) for cell in self._cells)
            return _zero_state_tensors(self.state_size, batch_size, as_dtype(dtype))

    def call(self, inputs: Any, state: Any) -> tuple[Any, Any]:
        if self._state_is_tuple and not _is_nested(state):
            raise ValueError(f"Expected state to be a tuple of length {len(self._cells)}, but received: {state}")
        cur_inp, new_states, pos = inputs, [], 0
        for i, cell in enumerate(self._cells):
            with variable_scope(f"cell_{i}"):
                if self._state_is_tuple:
                    cur_state = state[i]
                else:
                    cur_state = layout_ops.slice(state, [0, pos], [-1, cell.state_size])
                    pos += cell.state_size
                cur_inp, new_state = cell(cur_inp, cur_state)
                new_states.append(new_state)
        return cur_inp, (tuple(new_states) if self._state_is_tuple else layout_ops.concat(new_states, 1))


class rnn_cell:  # noqa: N801 - TF's module name
    """`tf.nn.rnn_cell`: the cell classes."""

    RNNCell = RNNCell
    LayerRNNCell = LayerRNNCell
    BasicRNNCell = BasicRNNCell
    GRUCell = GRUCell
    BasicLSTMCell = BasicLSTMCell
    LSTMCell = LSTMCell
    LSTMStateTuple = LSTMStateTuple
    DropoutWrapper = DropoutWrapper
    MultiRNNCell = MultiRNNCell


# -- running a cell over a sequence ---------------------------------------------------------------
def _infer_state_dtype(explicit: Any, state: Any) -> DType:
    if explicit is not None:
        return as_dtype(explicit)
    dtypes = {t.dtype for t in flatten(state)}
    if len(dtypes) != 1:
        names = sorted(d.name for d in dtypes)
        raise ValueError(f"Argument state={state} has tensors of different inferred dtypes: {names}")
    return dtypes.pop()


def _initial_state(cell: RNNCell, initial_state: Any, batch_size: Any, dtype: Any) -> Any:
    if initial_state is not None:
        return initial_state
    if not dtype:
        raise ValueError("If no initial_state is provided, argument `dtype` must be specified")
    return cell.zero_state(batch_size, dtype)


def _sequence_lengths(sequence_length: Any) -> Tensor:
    lengths = math_ops.cast(convert_to_tensor(sequence_length), int32)
    if lengths.shape.ndims not in (None, 1):
        raise ValueError("Argument sequence_length must be a vector of length batch_size. "
                         f"Received sequence_length of shape: {lengths.shape}")
    return array_ops.identity(lengths, name="sequence_length")


def _zero_output(output_size: Any, batch_size: Any, dtype: DType) -> Any:
    return _zero_state_tensors(output_size, batch_size, dtype)


def _copy_through(time: Any, lengths: Tensor, zero_output: Any, state: Any,
                  output: Any, new_state: Any) -> tuple[Any, Any]:
    """Past a sequence's end (time >= its length) its output is zero and its state carried."""
    done = math_ops.greater_equal(time, lengths)
    output = map_structure(lambda z, o: math_ops.where(done, z, o), zero_output, output)
    new_state = map_structure(lambda s, n: math_ops.where(done, s, n), state, new_state)
    return output, new_state


def _check_cell(cell: Any) -> None:
    if not (hasattr(cell, "output_size") and hasattr(cell, "state_size") and callable(cell)):
        raise TypeError(f"The argument 'cell' ({cell}) is not an RNNCell: 'output_size' property "
                        "is missing, 'state_size' property is missing, or it is not callable.")


def static_rnn(cell: RNNCell, inputs: Sequence[Any], initial_state: Any = None, dtype: Any = None,
               sequence_length: Any = None, scope: Any = None) -> tuple[list[Any], Any]:
    """The cell unrolled over a Python list of [batch, depth] inputs, in variable scope `rnn`."""
    _check_cell(cell)
    if not _is_nested(inputs):
        raise TypeError(f"Argument `inputs` must be a sequence. Received: {inputs}")
    if not inputs:
        raise ValueError("Argument `inputs` must not be empty.")
    outputs = []
    with variable_scope(scope or "rnn") as varscope:
        first = convert_to_tensor(flatten(inputs[0])[0])
        _check_input_depth(first, 1)
        batch_size = first.shape[0].value or array_ops.shape(first)[0]
        state = _initial_state(cell, initial_state, batch_size, dtype)
        if sequence_length is not None:
            lengths = _sequence_lengths(sequence_length)
            zero_output = _zero_output(cell.output_size, batch_size, _infer_state_dtype(dtype, state))
        for time, input_ in enumerate(inputs):
            if time > 0:
                varscope.reuse_variables()
            output, new_state = cell(input_, state)
            if sequence_length is not None:
                output, new_state = _copy_through(time, lengths, zero_output, state, output, new_state)
            outputs.append(output)
            state = new_state
        return outputs, state


def _check_input_depth(x: Tensor, first_feature_axis: int) -> None:
    shape = x.shape
    if shape.ndims is None or shape.ndims <= first_feature_axis:
        raise ValueError(f"Input tensor {x.name} should have rank >= {first_feature_axis + 1}; its shape is {shape}")
    if any(d is None for d in shape.as_list()[first_feature_axis:]):
        raise ValueError("Input size (depth of inputs) must be accessible via shape inference, "
                         f"but saw value None for input={x.name} of shape {shape}.")


def _transpose_batch_time(x: Tensor) -> Tensor:
    rank = x.shape.ndims
    if rank is not None and rank < 2:
        return x
    return layout_ops.transpose(x, [1, 0, *range(2, rank)])


def dynamic_rnn(cell: RNNCell, inputs: Any, sequence_length: Any = None, initial_state: Any = None,
                dtype: Any = None, parallel_iterations: int | None = None, swap_memory: bool = False,
                time_major: bool = False, scope: Any = None) -> tuple[Any, Any]:
    """The cell run over the time axis of `inputs` in a `tf.while_loop` (variable scope `rnn`).

    Outputs are [batch, time, output_size] ([time, batch, ...] when time_major); with
    `sequence_length`, outputs past each sequence's end are zero and its state is carried
    through, so the final state is the state at the sequence's last step.
    """
    _check_cell(cell)
    with variable_scope(scope or "rnn"):
        flat_input = [convert_to_tensor(x) for x in flatten(inputs)]
        if not time_major:
            flat_input = [_transpose_batch_time(x) for x in flat_input]
        for x in flat_input:
            _check_input_depth(x, 2)
        lengths = _sequence_lengths(sequence_length) if sequence_length is not None else None
        first = flat_input[0]
        batch_size = first.shape[1].value or array_ops.shape(first)[1]
        state = _initial_state(cell, initial_state, batch_size, dtype)
        inputs = pack_sequence_as(inputs, flat_input)
        outputs, final_state = _dynamic_rnn_loop(cell, inputs, state, lengths, batch_size, dtype)
        if not time_major:
            outputs = map_structure(_transpose_batch_time, outputs)
        return outputs, final_state


def _dynamic_rnn_loop(cell: RNNCell, inputs: Any, state: Any, lengths: Tensor | None, batch_size: Any,
                      dtype: Any) -> tuple[Any, Any]:
    """One `while` node over time: the carried values are the time and the state, the outputs
    come back stacked per iteration. As TF, the loop stops after the longest sequence; the
    outputs of the steps it skips are zeros."""
    flat_input = flatten(inputs)
    time_steps = array_ops.shape(flat_input[0])[0]
    zero_output = _zero_output(cell.output_size, batch_size, _infer_state_dtype(dtype, state))
    flat_state = [convert_to_tensor(s) for s in flatten(state)]
    if lengths is not None:
        bound = math_ops.minimum(time_steps, math_ops.maximum(1, math_ops.reduce_max(lengths)))
    else:
        bound = time_steps
    time = array_ops.constant(0, dtype=int32, name="time")

    def step(values: list[Tensor]) -> tuple[list[Any], list[Any]]:
        t, state_t = values[0], pack_sequence_as(state, values[1:])
        input_t = pack_sequence_as(inputs, [layout_ops.gather(x, t) for x in flat_input])
        output, new_state = cell(input_t, state_t)
        if lengths is not None:
            output, new_state = _copy_through(t, lengths, zero_output, state_t, output, new_state)
        return [math_ops.add(t, 1), *flatten(new_state)], flatten(output)

    with get_default_graph().name_scope("while") as scope:
        init = [time, *flat_state]
        final, stacked = loop(lambda v: math_ops.less(v[0], bound), step, init, [t.type for t in init], True, scope)
    if lengths is not None:
        stacked = [_pad_time(out, time_steps, bound) for out in stacked]
    outputs = [_with_static_shape(out, flat_input[0], size)
               for out, size in zip(stacked, flatten(cell.output_size))]
    return pack_sequence_as(cell.output_size, outputs), pack_sequence_as(state, final[1:])


def _pad_time(stacked: Tensor, time_steps: Tensor, done: Tensor) -> Tensor:
    """Zeros for the steps after the loop stopped, as TF's unwritten TensorArray entries."""
    rest = math_ops.subtract(time_steps, done)
    zeros = array_ops.zeros(layout_ops.concat([layout_ops.expand_dims(rest, 0), array_ops.shape(stacked)[1:]], 0),
                            stacked.dtype)
    return layout_ops.concat([stacked, zeros], 0)


def _with_static_shape(outputs: Tensor, inputs: Tensor, size: Any) -> Tensor:
    """[time, batch, *size] with the dims known while building made part of the tensor's type."""
    return _restore_shape(outputs, [inputs.shape[0].value, inputs.shape[1].value, *_state_shape(0, size)[1:]])


def _restore_shape(t: Tensor, dims: list[Any]) -> Tensor:
    """t with the static `dims` in its type (a reshape, free) when at most one is unknown."""
    if dims.count(None) > 1:
        t.set_shape(dims)
        return t
    return array_ops.reshape(t, [-1 if d is None else d for d in dims])


def _reverse_time(x: Tensor, lengths: Tensor | None, time_major: bool) -> Tensor:
    """Each sequence reversed along time up to its length (TF's reverse_sequence), or all of it."""
    xt = x if time_major else _transpose_batch_time(x)
    steps = array_ops.shape(xt)[0]
    if lengths is None:
        out = layout_ops.gather(xt, array_ops.range(steps - 1, -1, -1))
    else:
        batch = array_ops.shape(xt)[1]
        t = layout_ops.expand_dims(array_ops.range(steps), 1)
        source = math_ops.where_v2(math_ops.less(t, lengths), lengths - 1 - t, t)
        rows = array_ops.reshape(xt, layout_ops.concat([[-1], array_ops.shape(xt)[2:]], 0))
        out = layout_ops.gather(rows, source * batch + array_ops.range(batch))
    out = _restore_shape(out, xt.shape.as_list())
    return out if time_major else _transpose_batch_time(out)


def bidirectional_dynamic_rnn(cell_fw: RNNCell, cell_bw: RNNCell, inputs: Any, sequence_length: Any = None,
                              initial_state_fw: Any = None, initial_state_bw: Any = None, dtype: Any = None,
                              parallel_iterations: int | None = None, swap_memory: bool = False,
                              time_major: bool = False, scope: Any = None) -> tuple[Any, Any]:
    """A forward and a backward dynamic_rnn (scopes `bidirectional_rnn/fw`, `.../bw`); the backward
    one reads each sequence reversed up to its length, and its outputs are reversed back."""
    _check_cell(cell_fw)
    _check_cell(cell_bw)
    with variable_scope(scope or "bidirectional_rnn"):
        with variable_scope("fw") as fw_scope:
            output_fw, state_fw = dynamic_rnn(cell_fw, inputs, sequence_length, initial_state_fw, dtype,
                                              time_major=time_major, scope=fw_scope)
        lengths = math_ops.cast(convert_to_tensor(sequence_length), int32) if sequence_length is not None else None
        with variable_scope("bw") as bw_scope:
            reversed_inputs = map_structure(lambda x: _reverse_time(convert_to_tensor(x), lengths, time_major), inputs)
            reversed_outputs, state_bw = dynamic_rnn(cell_bw, reversed_inputs, sequence_length, initial_state_bw,
                                                     dtype, time_major=time_major, scope=bw_scope)
    output_bw = map_structure(lambda x: _reverse_time(x, lengths, time_major), reversed_outputs)
    return (output_fw, output_bw), (state_fw, state_bw)
