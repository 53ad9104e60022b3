"""BVLC caffe.proto (master, 2017-) as caffeish schema definitions.

Field names, numbers, kinds, packed flags and defaults follow BVLC's ``src/caffe/proto/caffe.proto``.
Enums nested in a message are registered as ``"<Message>.<Enum>"``; ``Phase`` is top level.
Enum dicts keep declaration order: proto2's implicit default is the first declared value.
Importing this module fills :data:`caffeish.config.schema.MESSAGES` and ``ENUMS``.
"""
from __future__ import annotations

from .schema import ENUMS, MESSAGES, enum, enum_field, message, msg_field, opt, rep

_ENGINE = dict(DEFAULT=0, CAFFE=1, CUDNN=2)
_POOL = dict(MAX=0, AVE=1, STOCHASTIC=2)

# --- enums -------------------------------------------------------------------------------
enum("Phase", TRAIN=0, TEST=1)
enum("FillerParameter.VarianceNorm", FAN_IN=0, FAN_OUT=1, AVERAGE=2)
enum("SolverParameter.SnapshotFormat", HDF5=0, BINARYPROTO=1)
enum("SolverParameter.SolverMode", CPU=0, GPU=1)
enum("SolverParameter.SolverType", SGD=0, NESTEROV=1, ADAGRAD=2, RMSPROP=3, ADADELTA=4, ADAM=5)
enum("ParamSpec.DimCheckMode", STRICT=0, PERMISSIVE=1)
enum("LossParameter.NormalizationMode", FULL=0, VALID=1, BATCH_SIZE=2, NONE=3)
enum("ConvolutionParameter.Engine", **_ENGINE)
enum("DataParameter.DB", LEVELDB=0, LMDB=1)
enum("EltwiseParameter.EltwiseOp", PROD=0, SUM=1, MAX=2)
enum("HingeLossParameter.Norm", L1=1, L2=2)
enum("LRNParameter.NormRegion", ACROSS_CHANNELS=0, WITHIN_CHANNEL=1)
enum("LRNParameter.Engine", **_ENGINE)
enum("PoolingParameter.PoolMethod", **_POOL)
enum("PoolingParameter.Engine", **_ENGINE)
enum("PoolingParameter.RoundMode", CEIL=0, FLOOR=1)
enum("ReductionParameter.ReductionOp", SUM=1, ASUM=2, SUMSQ=3, MEAN=4)
enum("ReLUParameter.Engine", **_ENGINE)
enum("SigmoidParameter.Engine", **_ENGINE)
enum("SoftmaxParameter.Engine", **_ENGINE)
enum("TanHParameter.Engine", **_ENGINE)
enum("SPPParameter.PoolMethod", **_POOL)
enum("SPPParameter.Engine", **_ENGINE)
enum(
    "V1LayerParameter.LayerType",
    NONE=0, ABSVAL=35, ACCURACY=1, ARGMAX=30, BNLL=2, CONCAT=3, CONTRASTIVE_LOSS=37,
    CONVOLUTION=4, DATA=5, DECONVOLUTION=39, DROPOUT=6, DUMMY_DATA=32, EUCLIDEAN_LOSS=7,
    ELTWISE=25, EXP=38, FLATTEN=8, HDF5_DATA=9, HDF5_OUTPUT=10, HINGE_LOSS=28, IM2COL=11,
    IMAGE_DATA=12, INFOGAIN_LOSS=13, INNER_PRODUCT=14, LRN=15, MEMORY_DATA=29,
    MULTINOMIAL_LOGISTIC_LOSS=16, MVN=34, POOLING=17, POWER=26, RELU=18, SIGMOID=19,
    SIGMOID_CROSS_ENTROPY_LOSS=27, SILENCE=36, SOFTMAX=20, SOFTMAX_LOSS=21, SPLIT=22, SLICE=33,
    TANH=23, WINDOW_DATA=24, THRESHOLD=31,
)
enum("V1LayerParameter.DimCheckMode", STRICT=0, PERMISSIVE=1)
enum("V0LayerParameter.PoolMethod", **_POOL)

# V1 LayerType symbol -> V2 type string (upgrade_proto.cpp UpgradeV1LayerType).
V1_TYPE_TO_V2 = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

# --- blobs and data ----------------------------------------------------------------------
message("BlobShape", rep("dim", 1, "int64", packed=True))
message(
    "BlobProto",
    msg_field("shape", 7, "BlobShape"),
    rep("data", 5, "float", packed=True),
    rep("diff", 6, "float", packed=True),
    rep("double_data", 8, "double", packed=True),
    rep("double_diff", 9, "double", packed=True),
    opt("num", 1, "int32", 0),
    opt("channels", 2, "int32", 0),
    opt("height", 3, "int32", 0),
    opt("width", 4, "int32", 0),
)
message("BlobProtoVector", msg_field("blobs", 1, "BlobProto", repeated=True))
message(
    "Datum",
    opt("channels", 1, "int32"),
    opt("height", 2, "int32"),
    opt("width", 3, "int32"),
    opt("data", 4, "bytes"),
    opt("label", 5, "int32"),
    rep("float_data", 6, "float"),
    opt("encoded", 7, "bool", False),
)
message(
    "FillerParameter",
    opt("type", 1, "string", "constant"),
    opt("value", 2, "float", 0.0),
    opt("min", 3, "float", 0.0),
    opt("max", 4, "float", 1.0),
    opt("mean", 5, "float", 0.0),
    opt("std", 6, "float", 1.0),
    opt("sparse", 7, "int32", -1),
    enum_field("variance_norm", 8, "FillerParameter.VarianceNorm", "FAN_IN"),
)

# --- net, solver, state ------------------------------------------------------------------
message(
    "NetParameter",
    opt("name", 1, "string"),
    rep("input", 3, "string"),
    msg_field("input_shape", 8, "BlobShape", repeated=True),
    rep("input_dim", 4, "int32"),
    opt("force_backward", 5, "bool", False),
    msg_field("state", 6, "NetState"),
    opt("debug_info", 7, "bool", False),
    msg_field("layer", 100, "LayerParameter", repeated=True),
    msg_field("layers", 2, "V1LayerParameter", repeated=True),
)
message(
    "SolverParameter",
    opt("net", 24, "string"),
    msg_field("net_param", 25, "NetParameter"),
    opt("train_net", 1, "string"),
    rep("test_net", 2, "string"),
    msg_field("train_net_param", 21, "NetParameter"),
    msg_field("test_net_param", 22, "NetParameter", repeated=True),
    msg_field("train_state", 26, "NetState"),
    msg_field("test_state", 27, "NetState", repeated=True),
    rep("test_iter", 3, "int32"),
    opt("test_interval", 4, "int32", 0),
    opt("test_compute_loss", 19, "bool", False),
    opt("test_initialization", 32, "bool", True),
    opt("base_lr", 5, "float"),
    opt("display", 6, "int32"),
    opt("average_loss", 33, "int32", 1),
    opt("max_iter", 7, "int32"),
    opt("iter_size", 36, "int32", 1),
    opt("lr_policy", 8, "string"),
    opt("gamma", 9, "float"),
    opt("power", 10, "float"),
    opt("momentum", 11, "float"),
    opt("weight_decay", 12, "float"),
    opt("regularization_type", 29, "string", "L2"),
    opt("stepsize", 13, "int32"),
    rep("stepvalue", 34, "int32"),
    opt("clip_gradients", 35, "float", -1.0),
    opt("snapshot", 14, "int32", 0),
    opt("snapshot_prefix", 15, "string"),
    opt("snapshot_diff", 16, "bool", False),
    enum_field("snapshot_format", 37, "SolverParameter.SnapshotFormat", "BINARYPROTO"),
    enum_field("solver_mode", 17, "SolverParameter.SolverMode", "GPU"),
    opt("device_id", 18, "int32", 0),
    opt("random_seed", 20, "int64", -1),
    opt("type", 40, "string", "SGD"),
    opt("delta", 31, "float", 1e-8),
    opt("momentum2", 39, "float", 0.999),
    opt("rms_decay", 38, "float", 0.99),
    opt("debug_info", 23, "bool", False),
    opt("snapshot_after_train", 28, "bool", True),
    enum_field("solver_type", 30, "SolverParameter.SolverType", "SGD"),
    opt("layer_wise_reduce", 41, "bool", True),
    rep("weights", 42, "string"),
)
message(
    "SolverState",
    opt("iter", 1, "int32"),
    opt("learned_net", 2, "string"),
    msg_field("history", 3, "BlobProto", repeated=True),
    opt("current_step", 4, "int32", 0),
    # caffeish's own: data cursors and RNG states (JSON) for an exact resume; Caffe skips it.
    opt("caffeish_state", 1000, "bytes"),
)
message(
    "NetState",
    enum_field("phase", 1, "Phase", "TEST"),
    opt("level", 2, "int32", 0),
    rep("stage", 3, "string"),
)
message(
    "NetStateRule",
    enum_field("phase", 1, "Phase"),
    opt("min_level", 2, "int32"),
    opt("max_level", 3, "int32"),
    rep("stage", 4, "string"),
    rep("not_stage", 5, "string"),
)
message(
    "ParamSpec",
    opt("name", 1, "string"),
    enum_field("share_mode", 2, "ParamSpec.DimCheckMode"),
    opt("lr_mult", 3, "float", 1.0),
    opt("decay_mult", 4, "float", 1.0),
)

# LayerParameter: *_param field name -> (message, number), BVLC master (next ID 149).
LAYER_PARAMS = {
    "accuracy_param": ("AccuracyParameter", 102),
    "argmax_param": ("ArgMaxParameter", 103),
    "batch_norm_param": ("BatchNormParameter", 139),
    "bias_param": ("BiasParameter", 141),
    "clip_param": ("ClipParameter", 148),
    "concat_param": ("ConcatParameter", 104),
    "contrastive_loss_param": ("ContrastiveLossParameter", 105),
    "convolution_param": ("ConvolutionParameter", 106),
    "crop_param": ("CropParameter", 144),
    "data_param": ("DataParameter", 107),
    "dropout_param": ("DropoutParameter", 108),
    "dummy_data_param": ("DummyDataParameter", 109),
    "eltwise_param": ("EltwiseParameter", 110),
    "elu_param": ("ELUParameter", 140),
    "embed_param": ("EmbedParameter", 137),
    "exp_param": ("ExpParameter", 111),
    "flatten_param": ("FlattenParameter", 135),
    "hdf5_data_param": ("HDF5DataParameter", 112),
    "hdf5_output_param": ("HDF5OutputParameter", 113),
    "hinge_loss_param": ("HingeLossParameter", 114),
    "image_data_param": ("ImageDataParameter", 115),
    "infogain_loss_param": ("InfogainLossParameter", 116),
    "inner_product_param": ("InnerProductParameter", 117),
    "input_param": ("InputParameter", 143),
    "log_param": ("LogParameter", 134),
    "lrn_param": ("LRNParameter", 118),
    "memory_data_param": ("MemoryDataParameter", 119),
    "mvn_param": ("MVNParameter", 120),
    "parameter_param": ("ParameterParameter", 145),
    "pooling_param": ("PoolingParameter", 121),
    "power_param": ("PowerParameter", 122),
    "prelu_param": ("PReLUParameter", 131),
    "python_param": ("PythonParameter", 130),
    "recurrent_param": ("RecurrentParameter", 146),
    "reduction_param": ("ReductionParameter", 136),
    "relu_param": ("ReLUParameter", 123),
    "reshape_param": ("ReshapeParameter", 133),
    "scale_param": ("ScaleParameter", 142),
    "sigmoid_param": ("SigmoidParameter", 124),
    "softmax_param": ("SoftmaxParameter", 125),
    "spp_param": ("SPPParameter", 132),
    "slice_param": ("SliceParameter", 126),
    "swish_param": ("SwishParameter", 147),
    "tanh_param": ("TanHParameter", 127),
    "threshold_param": ("ThresholdParameter", 128),
    "tile_param": ("TileParameter", 138),
    "window_data_param": ("WindowDataParameter", 129),
}

message(
    "LayerParameter",
    opt("name", 1, "string"),
    opt("type", 2, "string"),
    rep("bottom", 3, "string"),
    rep("top", 4, "string"),
    enum_field("phase", 10, "Phase"),
    rep("loss_weight", 5, "float"),
    msg_field("param", 6, "ParamSpec", repeated=True),
    msg_field("blobs", 7, "BlobProto", repeated=True),
    rep("propagate_down", 11, "bool"),
    msg_field("include", 8, "NetStateRule", repeated=True),
    msg_field("exclude", 9, "NetStateRule", repeated=True),
    msg_field("transform_param", 100, "TransformationParameter"),
    msg_field("loss_param", 101, "LossParameter"),
    *[msg_field(fname, num, mname) for fname, (mname, num) in LAYER_PARAMS.items()],
)
message(
    "TransformationParameter",
    opt("scale", 1, "float", 1.0),
    opt("mirror", 2, "bool", False),
    opt("crop_size", 3, "uint32", 0),
    opt("mean_file", 4, "string"),
    rep("mean_value", 5, "float"),
    opt("force_color", 6, "bool", False),
    opt("force_gray", 7, "bool", False),
)
message(
    "LossParameter",
    opt("ignore_label", 1, "int32"),
    enum_field("normalization", 3, "LossParameter.NormalizationMode", "VALID"),
    opt("normalize", 2, "bool"),
)

# --- layer parameters, in caffe.proto's order ---------------------------------------------
message(
    "AccuracyParameter",
    opt("top_k", 1, "uint32", 1),
    opt("axis", 2, "int32", 1),
    opt("ignore_label", 3, "int32"),
)
message(
    "ArgMaxParameter",
    opt("out_max_val", 1, "bool", False),
    opt("top_k", 2, "uint32", 1),
    opt("axis", 3, "int32"),
)
message(
    "ClipParameter",
    opt("min", 1, "float"),
    opt("max", 2, "float"),
)
message(
    "ConcatParameter",
    opt("axis", 2, "int32", 1),
    opt("concat_dim", 1, "uint32", 1),
)
message(
    "BatchNormParameter",
    opt("use_global_stats", 1, "bool"),
    opt("moving_average_fraction", 2, "float", 0.999),
    opt("eps", 3, "float", 1e-5),
)
message(
    "BiasParameter",
    opt("axis", 1, "int32", 1),
    opt("num_axes", 2, "int32", 1),
    msg_field("filler", 3, "FillerParameter"),
)
message(
    "ContrastiveLossParameter",
    opt("margin", 1, "float", 1.0),
    opt("legacy_version", 2, "bool", False),
)
message(
    "ConvolutionParameter",
    opt("num_output", 1, "uint32"),
    opt("bias_term", 2, "bool", True),
    rep("pad", 3, "uint32"),
    rep("kernel_size", 4, "uint32"),
    rep("stride", 6, "uint32"),
    rep("dilation", 18, "uint32"),
    opt("pad_h", 9, "uint32", 0),
    opt("pad_w", 10, "uint32", 0),
    opt("kernel_h", 11, "uint32"),
    opt("kernel_w", 12, "uint32"),
    opt("stride_h", 13, "uint32"),
    opt("stride_w", 14, "uint32"),
    opt("group", 5, "uint32", 1),
    msg_field("weight_filler", 7, "FillerParameter"),
    msg_field("bias_filler", 8, "FillerParameter"),
    enum_field("engine", 15, "ConvolutionParameter.Engine", "DEFAULT"),
    opt("axis", 16, "int32", 1),
    opt("force_nd_im2col", 17, "bool", False),
)
message(
    "CropParameter",
    opt("axis", 1, "int32", 2),
    rep("offset", 2, "uint32"),
)
message(
    "DataParameter",
    opt("source", 1, "string"),
    opt("batch_size", 4, "uint32"),
    opt("rand_skip", 7, "uint32", 0),
    enum_field("backend", 8, "DataParameter.DB", "LEVELDB"),
    opt("scale", 2, "float", 1.0),
    opt("mean_file", 3, "string"),
    opt("crop_size", 5, "uint32", 0),
    opt("mirror", 6, "bool", False),
    opt("force_encoded_color", 9, "bool", False),
    opt("prefetch", 10, "uint32", 4),
)
message("DropoutParameter", opt("dropout_ratio", 1, "float", 0.5))
message(
    "DummyDataParameter",
    msg_field("data_filler", 1, "FillerParameter", repeated=True),
    msg_field("shape", 6, "BlobShape", repeated=True),
    rep("num", 2, "uint32"),
    rep("channels", 3, "uint32"),
    rep("height", 4, "uint32"),
    rep("width", 5, "uint32"),
)
message(
    "EltwiseParameter",
    enum_field("operation", 1, "EltwiseParameter.EltwiseOp", "SUM"),
    rep("coeff", 2, "float"),
    opt("stable_prod_grad", 3, "bool", True),
)
message("ELUParameter", opt("alpha", 1, "float", 1.0))
message(
    "EmbedParameter",
    opt("num_output", 1, "uint32"),
    opt("input_dim", 2, "uint32"),
    opt("bias_term", 3, "bool", True),
    msg_field("weight_filler", 4, "FillerParameter"),
    msg_field("bias_filler", 5, "FillerParameter"),
)
message(
    "ExpParameter",
    opt("base", 1, "float", -1.0),
    opt("scale", 2, "float", 1.0),
    opt("shift", 3, "float", 0.0),
)
message(
    "FlattenParameter",
    opt("axis", 1, "int32", 1),
    opt("end_axis", 2, "int32", -1),
)
message(
    "HDF5DataParameter",
    opt("source", 1, "string"),
    opt("batch_size", 2, "uint32"),
    opt("shuffle", 3, "bool", False),
)
message("HDF5OutputParameter", opt("file_name", 1, "string"))
message("HingeLossParameter", enum_field("norm", 1, "HingeLossParameter.Norm", "L1"))
message(
    "ImageDataParameter",
    opt("source", 1, "string"),
    opt("batch_size", 4, "uint32", 1),
    opt("rand_skip", 7, "uint32", 0),
    opt("shuffle", 8, "bool", False),
    opt("new_height", 9, "uint32", 0),
    opt("new_width", 10, "uint32", 0),
    opt("is_color", 11, "bool", True),
    opt("scale", 2, "float", 1.0),
    opt("mean_file", 3, "string"),
    opt("crop_size", 5, "uint32", 0),
    opt("mirror", 6, "bool", False),
    opt("root_folder", 12, "string", ""),
)
message(
    "InfogainLossParameter",
    opt("source", 1, "string"),
    opt("axis", 2, "int32", 1),
)
message(
    "InnerProductParameter",
    opt("num_output", 1, "uint32"),
    opt("bias_term", 2, "bool", True),
    msg_field("weight_filler", 3, "FillerParameter"),
    msg_field("bias_filler", 4, "FillerParameter"),
    opt("axis", 5, "int32", 1),
    opt("transpose", 6, "bool", False),
)
message("InputParameter", msg_field("shape", 1, "BlobShape", repeated=True))
message(
    "LogParameter",
    opt("base", 1, "float", -1.0),
    opt("scale", 2, "float", 1.0),
    opt("shift", 3, "float", 0.0),
)
message(
    "LRNParameter",
    opt("local_size", 1, "uint32", 5),
    opt("alpha", 2, "float", 1.0),
    opt("beta", 3, "float", 0.75),
    enum_field("norm_region", 4, "LRNParameter.NormRegion", "ACROSS_CHANNELS"),
    opt("k", 5, "float", 1.0),
    enum_field("engine", 6, "LRNParameter.Engine", "DEFAULT"),
)
message(
    "MemoryDataParameter",
    opt("batch_size", 1, "uint32"),
    opt("channels", 2, "uint32"),
    opt("height", 3, "uint32"),
    opt("width", 4, "uint32"),
)
message(
    "MVNParameter",
    opt("normalize_variance", 1, "bool", True),
    opt("across_channels", 2, "bool", False),
    opt("eps", 3, "float", 1e-9),
)
message("ParameterParameter", msg_field("shape", 1, "BlobShape"))
message(
    "PoolingParameter",
    enum_field("pool", 1, "PoolingParameter.PoolMethod", "MAX"),
    opt("pad", 4, "uint32", 0),
    opt("pad_h", 9, "uint32", 0),
    opt("pad_w", 10, "uint32", 0),
    opt("kernel_size", 2, "uint32"),
    opt("kernel_h", 5, "uint32"),
    opt("kernel_w", 6, "uint32"),
    opt("stride", 3, "uint32", 1),
    opt("stride_h", 7, "uint32"),
    opt("stride_w", 8, "uint32"),
    enum_field("engine", 11, "PoolingParameter.Engine", "DEFAULT"),
    opt("global_pooling", 12, "bool", False),
    enum_field("round_mode", 13, "PoolingParameter.RoundMode", "CEIL"),
)
message(
    "PowerParameter",
    opt("power", 1, "float", 1.0),
    opt("scale", 2, "float", 1.0),
    opt("shift", 3, "float", 0.0),
)
message(
    "PythonParameter",
    opt("module", 1, "string"),
    opt("layer", 2, "string"),
    opt("param_str", 3, "string", ""),
    opt("share_in_parallel", 4, "bool", False),
)
message(
    "RecurrentParameter",
    opt("num_output", 1, "uint32", 0),
    msg_field("weight_filler", 2, "FillerParameter"),
    msg_field("bias_filler", 3, "FillerParameter"),
    opt("debug_info", 4, "bool", False),
    opt("expose_hidden", 5, "bool", False),
)
message(
    "ReductionParameter",
    enum_field("operation", 1, "ReductionParameter.ReductionOp", "SUM"),
    opt("axis", 2, "int32", 0),
    opt("coeff", 3, "float", 1.0),
)
message(
    "ReLUParameter",
    opt("negative_slope", 1, "float", 0.0),
    enum_field("engine", 2, "ReLUParameter.Engine", "DEFAULT"),
)
message(
    "ReshapeParameter",
    msg_field("shape", 1, "BlobShape"),
    opt("axis", 2, "int32", 0),
    opt("num_axes", 3, "int32", -1),
)
message(
    "ScaleParameter",
    opt("axis", 1, "int32", 1),
    opt("num_axes", 2, "int32", 1),
    msg_field("filler", 3, "FillerParameter"),
    opt("bias_term", 4, "bool", False),
    msg_field("bias_filler", 5, "FillerParameter"),
)
message("SigmoidParameter", enum_field("engine", 1, "SigmoidParameter.Engine", "DEFAULT"))
message(
    "SliceParameter",
    opt("axis", 3, "int32", 1),
    rep("slice_point", 2, "uint32"),
    opt("slice_dim", 1, "uint32", 1),
)
message(
    "SoftmaxParameter",
    enum_field("engine", 1, "SoftmaxParameter.Engine", "DEFAULT"),
    opt("axis", 2, "int32", 1),
)
message("SwishParameter", opt("beta", 1, "float", 1.0))
message("TanHParameter", enum_field("engine", 1, "TanHParameter.Engine", "DEFAULT"))
message(
    "TileParameter",
    opt("axis", 1, "int32", 1),
    opt("tiles", 2, "int32"),
)
message("ThresholdParameter", opt("threshold", 1, "float", 0.0))
message(
    "WindowDataParameter",
    opt("source", 1, "string"),
    opt("scale", 2, "float", 1.0),
    opt("mean_file", 3, "string"),
    opt("batch_size", 4, "uint32"),
    opt("crop_size", 5, "uint32", 0),
    opt("mirror", 6, "bool", False),
    opt("fg_threshold", 7, "float", 0.5),
    opt("bg_threshold", 8, "float", 0.5),
    opt("fg_fraction", 9, "float", 0.25),
    opt("context_pad", 10, "uint32", 0),
    opt("crop_mode", 11, "string", "warp"),
    opt("cache_images", 12, "bool", False),
    opt("root_folder", 13, "string", ""),
)
message(
    "SPPParameter",
    opt("pyramid_height", 1, "uint32"),
    enum_field("pool", 2, "SPPParameter.PoolMethod", "MAX"),
    enum_field("engine", 6, "SPPParameter.Engine", "DEFAULT"),
)

# --- legacy layer formats ----------------------------------------------------------------
V1_LAYER_PARAMS = {
    "accuracy_param": ("AccuracyParameter", 27),
    "argmax_param": ("ArgMaxParameter", 23),
    "concat_param": ("ConcatParameter", 9),
    "contrastive_loss_param": ("ContrastiveLossParameter", 40),
    "convolution_param": ("ConvolutionParameter", 10),
    "data_param": ("DataParameter", 11),
    "dropout_param": ("DropoutParameter", 12),
    "dummy_data_param": ("DummyDataParameter", 26),
    "eltwise_param": ("EltwiseParameter", 24),
    "exp_param": ("ExpParameter", 41),
    "hdf5_data_param": ("HDF5DataParameter", 13),
    "hdf5_output_param": ("HDF5OutputParameter", 14),
    "hinge_loss_param": ("HingeLossParameter", 29),
    "image_data_param": ("ImageDataParameter", 15),
    "infogain_loss_param": ("InfogainLossParameter", 16),
    "inner_product_param": ("InnerProductParameter", 17),
    "lrn_param": ("LRNParameter", 18),
    "memory_data_param": ("MemoryDataParameter", 22),
    "mvn_param": ("MVNParameter", 34),
    "pooling_param": ("PoolingParameter", 19),
    "power_param": ("PowerParameter", 21),
    "relu_param": ("ReLUParameter", 30),
    "sigmoid_param": ("SigmoidParameter", 38),
    "softmax_param": ("SoftmaxParameter", 39),
    "slice_param": ("SliceParameter", 31),
    "tanh_param": ("TanHParameter", 37),
    "threshold_param": ("ThresholdParameter", 25),
    "window_data_param": ("WindowDataParameter", 20),
    "transform_param": ("TransformationParameter", 36),
    "loss_param": ("LossParameter", 42),
}

message(
    "V1LayerParameter",
    rep("bottom", 2, "string"),
    rep("top", 3, "string"),
    opt("name", 4, "string"),
    msg_field("include", 32, "NetStateRule", repeated=True),
    msg_field("exclude", 33, "NetStateRule", repeated=True),
    enum_field("type", 5, "V1LayerParameter.LayerType"),
    msg_field("blobs", 6, "BlobProto", repeated=True),
    rep("param", 1001, "string"),
    enum_field("blob_share_mode", 1002, "V1LayerParameter.DimCheckMode", repeated=True),
    rep("blobs_lr", 7, "float"),
    rep("weight_decay", 8, "float"),
    rep("loss_weight", 35, "float"),
    *[msg_field(fname, num, mname) for fname, (mname, num) in V1_LAYER_PARAMS.items()],
    msg_field("layer", 1, "V0LayerParameter"),
)
message(
    "V0LayerParameter",
    opt("name", 1, "string"),
    opt("type", 2, "string"),
    opt("num_output", 3, "uint32"),
    opt("biasterm", 4, "bool", True),
    msg_field("weight_filler", 5, "FillerParameter"),
    msg_field("bias_filler", 6, "FillerParameter"),
    opt("pad", 7, "uint32", 0),
    opt("kernelsize", 8, "uint32"),
    opt("group", 9, "uint32", 1),
    opt("stride", 10, "uint32", 1),
    enum_field("pool", 11, "V0LayerParameter.PoolMethod", "MAX"),
    opt("dropout_ratio", 12, "float", 0.5),
    opt("local_size", 13, "uint32", 5),
    opt("alpha", 14, "float", 1.0),
    opt("beta", 15, "float", 0.75),
    opt("k", 22, "float", 1.0),
    opt("source", 16, "string"),
    opt("scale", 17, "float", 1.0),
    opt("meanfile", 18, "string"),
    opt("batchsize", 19, "uint32"),
    opt("cropsize", 20, "uint32", 0),
    opt("mirror", 21, "bool", False),
    msg_field("blobs", 50, "BlobProto", repeated=True),
    rep("blobs_lr", 51, "float"),
    rep("weight_decay", 52, "float"),
    opt("rand_skip", 53, "uint32", 0),
    opt("det_fg_threshold", 54, "float", 0.5),
    opt("det_bg_threshold", 55, "float", 0.5),
    opt("det_fg_fraction", 56, "float", 0.25),
    opt("det_context_pad", 58, "uint32", 0),
    opt("det_crop_mode", 59, "string", "warp"),
    opt("new_num", 60, "int32", 0),
    opt("new_channels", 61, "int32", 0),
    opt("new_height", 62, "int32", 0),
    opt("new_width", 63, "int32", 0),
    opt("shuffle_images", 64, "bool", False),
    opt("concat_dim", 65, "uint32", 1),
    msg_field("hdf5_output_param", 1001, "HDF5OutputParameter"),
)
message(
    "PReLUParameter",
    msg_field("filler", 1, "FillerParameter"),
    opt("channel_shared", 2, "bool", False),
)


def check_references() -> list[str]:
    """Names of message/enum types referenced by a field but not defined (empty when sound)."""
    missing = []
    for mname, mdef in MESSAGES.items():
        for f in mdef.fields.values():
            if f.kind == "message" and f.type_name not in MESSAGES:
                missing.append(f"{mname}.{f.name} -> message {f.type_name}")
            if f.kind == "enum":
                if f.type_name not in ENUMS:
                    missing.append(f"{mname}.{f.name} -> enum {f.type_name}")
                elif f.default is not None and f.default not in ENUMS[f.type_name]:
                    missing.append(f"{mname}.{f.name} default {f.default!r}")
    return missing
