"""caffe_proto: numbers, kinds and defaults checked against BVLC caffe.proto (master)."""
import pytest

import caffeish.config  # noqa: F401  (registers everything)
from caffeish.config.caffe_proto import LAYER_PARAMS, V1_TYPE_TO_V2, check_references
from caffeish.config.schema import ENUMS, MESSAGES, Msg


def test_every_reference_resolves():
    assert check_references() == []


@pytest.mark.parametrize("name", [
    "BlobShape", "BlobProto", "BlobProtoVector", "Datum", "FillerParameter", "NetParameter",
    "SolverParameter", "SolverState", "NetState", "NetStateRule", "ParamSpec", "LayerParameter",
    "TransformationParameter", "LossParameter", "V1LayerParameter", "V0LayerParameter",
    "PReLUParameter", "SwishParameter", "ClipParameter", "RecurrentParameter",
])
def test_message_defined(name):
    assert name in MESSAGES


@pytest.mark.parametrize("msg,field,number,kind", [
    ("BlobShape", "dim", 1, "int64"),
    ("BlobProto", "shape", 7, "message"),
    ("BlobProto", "data", 5, "float"),
    ("BlobProto", "double_data", 8, "double"),
    ("BlobProto", "num", 1, "int32"),
    ("Datum", "data", 4, "bytes"),
    ("Datum", "float_data", 6, "float"),
    ("NetParameter", "layer", 100, "message"),
    ("NetParameter", "layers", 2, "message"),
    ("NetParameter", "input_dim", 4, "int32"),
    ("LayerParameter", "blobs", 7, "message"),
    ("LayerParameter", "phase", 10, "enum"),
    ("LayerParameter", "transform_param", 100, "message"),
    ("LayerParameter", "convolution_param", 106, "message"),
    ("LayerParameter", "clip_param", 148, "message"),
    ("LayerParameter", "swish_param", 147, "message"),
    ("SolverParameter", "random_seed", 20, "int64"),
    ("SolverParameter", "layer_wise_reduce", 41, "bool"),
    ("SolverParameter", "weights", 42, "string"),
    ("SolverState", "history", 3, "message"),
    ("V1LayerParameter", "type", 5, "enum"),
    ("V1LayerParameter", "blobs", 6, "message"),
    ("V1LayerParameter", "param", 1001, "string"),
    ("V0LayerParameter", "blobs", 50, "message"),
    ("PoolingParameter", "round_mode", 13, "enum"),
    ("ConvolutionParameter", "dilation", 18, "uint32"),
])
def test_field_numbers(msg, field, number, kind):
    f = MESSAGES[msg].fields[field]
    assert (f.number, f.kind) == (number, kind)


def test_packed_flags():
    for msg, field in [("BlobShape", "dim"), ("BlobProto", "data"), ("BlobProto", "diff"),
                       ("BlobProto", "double_data"), ("BlobProto", "double_diff")]:
        assert MESSAGES[msg].fields[field].packed
    assert not MESSAGES["Datum"].fields["float_data"].packed
    assert not MESSAGES["LayerParameter"].fields["loss_weight"].packed


@pytest.mark.parametrize("msg,field,default", [
    ("ConvolutionParameter", "bias_term", True),
    ("ConvolutionParameter", "group", 1),
    ("ConvolutionParameter", "axis", 1),
    ("ConvolutionParameter", "engine", "DEFAULT"),
    ("PoolingParameter", "stride", 1),
    ("PoolingParameter", "pool", "MAX"),
    ("PoolingParameter", "round_mode", "CEIL"),
    ("FillerParameter", "type", "constant"),
    ("FillerParameter", "max", 1.0),
    ("FillerParameter", "std", 1.0),
    ("FillerParameter", "sparse", -1),
    ("ParamSpec", "lr_mult", 1.0),
    ("ParamSpec", "decay_mult", 1.0),
    ("ParamSpec", "share_mode", "STRICT"),
    ("SolverParameter", "solver_mode", "GPU"),
    ("SolverParameter", "random_seed", -1),
    ("SolverParameter", "regularization_type", "L2"),
    ("SolverParameter", "type", "SGD"),
    ("SolverParameter", "momentum2", 0.999),
    ("SolverParameter", "delta", 1e-8),
    ("SolverParameter", "rms_decay", 0.99),
    ("SolverParameter", "average_loss", 1),
    ("SolverParameter", "iter_size", 1),
    ("SolverParameter", "clip_gradients", -1.0),
    ("SolverParameter", "test_initialization", True),
    ("SolverParameter", "snapshot_after_train", True),
    ("SolverParameter", "snapshot_format", "BINARYPROTO"),
    ("DataParameter", "backend", "LEVELDB"),
    ("DataParameter", "prefetch", 4),
    ("LossParameter", "normalization", "VALID"),
    ("NetState", "phase", "TEST"),
    ("NetStateRule", "phase", "TRAIN"),
    ("LRNParameter", "local_size", 5),
    ("LRNParameter", "beta", 0.75),
    ("DropoutParameter", "dropout_ratio", 0.5),
    ("CropParameter", "axis", 2),
    ("FlattenParameter", "end_axis", -1),
    ("ReshapeParameter", "num_axes", -1),
    ("EltwiseParameter", "operation", "SUM"),
    ("ReductionParameter", "operation", "SUM"),
    ("HingeLossParameter", "norm", "L1"),
    ("BatchNormParameter", "moving_average_fraction", 0.999),
    ("BatchNormParameter", "eps", 1e-5),
    ("ImageDataParameter", "batch_size", 1),
    ("ImageDataParameter", "is_color", True),
    ("MVNParameter", "eps", 1e-9),
    ("ExpParameter", "base", -1.0),
    ("WindowDataParameter", "crop_mode", "warp"),
    ("V1LayerParameter", "type", "NONE"),
])
def test_defaults(msg, field, default):
    assert getattr(Msg(msg), field) == default


def test_enums():
    assert ENUMS["Phase"] == {"TRAIN": 0, "TEST": 1}
    assert ENUMS["PoolingParameter.PoolMethod"] == {"MAX": 0, "AVE": 1, "STOCHASTIC": 2}
    assert ENUMS["SolverParameter.SolverType"]["ADAM"] == 5
    lt = ENUMS["V1LayerParameter.LayerType"]
    assert (lt["CONVOLUTION"], lt["SOFTMAX_LOSS"], lt["INNER_PRODUCT"], lt["DECONVOLUTION"]) == (4, 21, 14, 39)
    assert set(V1_TYPE_TO_V2) == set(lt)
    assert V1_TYPE_TO_V2["SOFTMAX_LOSS"] == "SoftmaxWithLoss"


def test_layer_param_numbers_unique():
    nums = [n for _, n in LAYER_PARAMS.values()]
    assert len(nums) == len(set(nums))
    assert sorted(nums) == list(range(102, 149))
