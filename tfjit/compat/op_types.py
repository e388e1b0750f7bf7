"""TF's op type names (`op.type`, placement logs) for tfjit's IR op names."""
from __future__ import annotations

_TF_TYPES = {
    "add": "Add", "subtract": "Sub", "multiply": "Mul", "divide": "RealDiv", "floordiv": "FloorDiv",
    "mod": "FloorMod", "neg": "Neg", "matmul": "MatMul", "tensordot": "Tensordot", "constant": "Const",
    "variable": "VariableV2", "assign": "Assign", "assign_add": "AssignAdd", "assign_sub": "AssignSub",
    "placeholder": "Placeholder", "placeholder_with_default": "PlaceholderWithDefault", "param": "_Arg",
    "sum": "Sum", "mean": "Mean", "max": "Max", "min": "Min", "prod": "Prod", "all": "All", "any": "Any",
    "argmax": "ArgMax", "argmin": "ArgMin", "logsumexp": "ReduceLogSumExp", "no_op": "NoOp",
    "random_normal": "RandomStandardNormal", "truncated_normal": "TruncatedNormal",
    "random_uniform": "RandomUniform", "select": "Select", "squared_difference": "SquaredDifference",
    "is_nan": "IsNan", "is_finite": "IsFinite", "is_inf": "IsInf", "log1p": "Log1p", "expm1": "Expm1",
    "relu6": "Relu6", "bias_add": "BiasAdd", "softmax": "Softmax", "log_softmax": "LogSoftmax",
    "l2_loss": "L2Loss", "zeros_like": "ZerosLike", "ones_like": "OnesLike", "strided_slice": "StridedSlice",
    "gather": "GatherV2", "one_hot": "OneHot", "concat": "ConcatV2", "split": "SplitV", "stack": "Pack",
    "unstack": "Unpack", "expand_dims": "ExpandDims", "broadcast_to": "BroadcastTo",
    "stop_gradient": "StopGradient", "where_indices": "Where", "is_variable_initialized": "IsVariableInitialized",
    "softmax_cross_entropy_with_logits": "SoftmaxCrossEntropyWithLogits",
    "sparse_softmax_cross_entropy_with_logits": "SparseSoftmaxCrossEntropyWithLogits",
}


def tf_op_type(op: str) -> str:
    """'matmul' -> 'MatMul'; ops without an entry are CamelCased ('leaky_relu' -> 'LeakyRelu')."""
    return _TF_TYPES.get(op) or "".join(part.title() for part in op.split("_"))
