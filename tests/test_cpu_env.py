"""caffeish/_cpu_env: the OpenBLAS kernel set asked for before numpy loads."""
from caffeish import _cpu_env

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16

processor\t: 1
vendor_id\t: GenuineIntel
"""


def _cpuinfo(tmp_path, text):
    p = tmp_path / "cpuinfo"
    p.write_text(text)
    return str(p)


def test_zen4_gets_the_avx2_kernels(tmp_path):
    env = {}
    assert _cpu_env.choose_openblas_coretype(env, {}, _cpuinfo(tmp_path, ZEN4)) == "Haswell"
    assert env == {"OPENBLAS_CORETYPE": "Haswell"}


def test_only_the_first_processor_is_read(tmp_path):
    fields = _cpu_env.cpu_fields(_cpuinfo(tmp_path, ZEN4))
    assert fields["vendor_id"] == "AuthenticAMD" and fields["cpu family"] == "25"


def test_other_cpus_keep_openblas_own_choice(tmp_path):
    for text in (ZEN4.replace("cpu family\t: 25", "cpu family\t: 26"),        # Zen 5
                 ZEN4.replace(" avx512f avx512_bf16", ""),                     # Zen 3
                 ZEN4.replace("AuthenticAMD", "GenuineIntel"),
                 "garbage without fields\n"):
        env = {}
        assert _cpu_env.choose_openblas_coretype(env, {}, _cpuinfo(tmp_path, text)) is None
        assert env == {}
    assert _cpu_env.choose_openblas_coretype({}, {}, str(tmp_path / "missing")) is None


def test_the_user_choice_and_a_loaded_numpy_are_respected(tmp_path):
    path = _cpuinfo(tmp_path, ZEN4)
    env = {"OPENBLAS_CORETYPE": "SkylakeX"}
    assert _cpu_env.choose_openblas_coretype(env, {}, path) is None
    assert env == {"OPENBLAS_CORETYPE": "SkylakeX"}
    env = {}
    assert _cpu_env.choose_openblas_coretype(env, {"numpy": object()}, path) is None
    assert env == {}
