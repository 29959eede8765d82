"""Every public boundary answers bad input with an error that names the problem (issue: reliability).

Model-call and config errors are listed in test_model.py, CLI and checkpoint errors in test_train.py,
tokenizer errors in test_tokenizer.py; this file covers the loaders of transformers-format directories and
the corpus files of ``minibert pretrain --corpus``.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import minibert
from conftest import small_config


@pytest.fixture
def saved(tmp_path):
    model = minibert.BertForPreTraining(small_config(), seed=0)
    model.save_pretrained(str(tmp_path))
    return tmp_path


def test_missing_directory_config_or_weights_are_file_not_found(tmp_path, saved):
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        minibert.BertModel.from_pretrained(str(tmp_path / "nope"))
    os.remove(saved / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="weights file not found: .*model.safetensors"):
        minibert.BertModel.from_pretrained(str(saved))
    os.remove(saved / "config.json")
    with pytest.raises(FileNotFoundError, match="config file not found: .*config.json"):
        minibert.BertModel.from_pretrained(str(saved))


def test_malformed_config_json_is_a_value_error_naming_the_file(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        minibert.BertForPreTraining.from_pretrained(str(saved))
    (saved / "config.json").write_text(json.dumps({"hidden_size": 50, "num_attention_heads": 3}))
    with pytest.raises(ValueError, match="divisible by num_attention_heads"):
        minibert.BertForPreTraining.from_pretrained(str(saved))


def test_a_corrupted_weights_file_is_a_value_error(saved):
    data = open(saved / "model.safetensors", "rb").read()
    open(saved / "model.safetensors", "wb").write(data[: len(data) // 3])
    with pytest.raises(ValueError, match="model.safetensors is corrupted"):
        minibert.BertForPreTraining.from_pretrained(str(saved))


def test_weights_of_the_wrong_shape_are_named(saved):
    cfg = json.load(open(saved / "config.json"))
    cfg["intermediate_size"] = 64  # the file holds 80-wide FFN weights
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"intermediate.dense.weight has shape \(80, 48\), expected \(64, 48\)"):
        minibert.BertForPreTraining.from_pretrained(str(saved))


def test_missing_weights_are_reported_by_name_and_freshly_initialised(saved, capsys):
    from safetensors.numpy import load_file, save_file
    sd = load_file(str(saved / "model.safetensors"))
    del sd["cls.seq_relationship.weight"]
    save_file(sd, str(saved / "model.safetensors"))
    model = minibert.BertForPreTraining.from_pretrained(str(saved))
    assert model.missing_keys == ["cls.seq_relationship.weight"]
    assert "newly initialised" in capsys.readouterr().out


def test_load_state_dict_rejects_non_dicts_and_non_numbers():
    model = minibert.BertModel(small_config(), seed=0)
    with pytest.raises(TypeError, match="state_dict must be a dict"):
        model.load_state_dict([1, 2])
    sd = {k: v.copy() for k, v in model.state_dict().items()}
    sd["pooler.dense.bias"] = np.array(["a"] * 48)
    with pytest.raises(TypeError, match="pooler.dense.bias must hold numbers"):
        model.load_state_dict(sd)


def test_model_constructor_rejects_bad_config_and_dtype():
    with pytest.raises(TypeError, match="config must be a minibert.BertConfig"):
        minibert.BertModel({"hidden_size": 48})
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        minibert.BertModel(small_config(), dtype=np.int32)
    with pytest.raises(ValueError, match="backend must be 'numpy' or 'numba'"):
        minibert.set_backend("torch")


# -- minibert pretrain --corpus FILE: every bad file is named, with what was expected -------------------

EXPECTED = "expected a UTF-8 text file, one sentence per line and a blank line between documents"
BAD_CORPORA = {  # name -> (what to write, or "dir"; a pattern the error must match)
    "binary.bin": (bytes([0xB3, 0x00, 0x91, 0xFF]) * 64, r"'\S*binary.bin' is not UTF-8 text \(byte 0xb3 at offset 0"),
    "latin1.txt": ("the caf\xe9 is open.\n\nthe shop is shut.\n".encode("latin-1"),
                   r"'\S*latin1.txt' is not UTF-8 text \(byte 0xe9 at offset 7, line 1"),
    "nul.txt": (b"one sentence here.\n\nand \x00 one there.\n", r"'\S*nul.txt' holds a NUL byte \(line 3\)"),
    "empty.txt": (b"", r"'\S*empty.txt' is empty: " + EXPECTED),
    "blank.txt": (b"\n  \n\t\n", r"'\S*blank.txt' is empty: " + EXPECTED),
    "one_document.txt": (b"a first sentence.\na second one.\n", r"'\S*one_document.txt' has 1 document\(s\); NSP needs"),
    "a_directory": ("dir", r"--corpus '\S*a_directory' is a directory"),
    "missing.txt": (None, r"corpus file not found: '\S*missing.txt'"),
}


@pytest.mark.parametrize("name", sorted(BAD_CORPORA))
def test_pretrain_on_a_bad_corpus_file_names_the_file_and_what_was_expected(tmp_path, capsys, name):
    from minibert.cli import main
    content, pattern = BAD_CORPORA[name]
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    code = main(["pretrain", "--corpus", str(path), "--out", str(out), "--preset", "tiny", "--max-steps", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert re.search("^minibert pretrain: error: .*" + pattern, err, re.M), err
    assert "Traceback" not in err and "codec can't decode" not in err
    assert not out.exists(), "a corpus that cannot be read leaves no empty OUT directory behind"


def test_the_binary_corpus_error_through_the_console_command(tmp_path):
    """The case of the issue, in a process of its own: exit code 2 and one line naming the file."""
    path = tmp_path / "corpus.bin"
    path.write_bytes(bytes(range(0xB3, 0x100)) + bytes(range(0xB3)))
    r = subprocess.run([sys.executable, "-m", "minibert", "pretrain", "--corpus", str(path), "--out",
                        str(tmp_path / "out"), "--preset", "tiny"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert f"corpus file {str(path)!r} is not UTF-8 text (byte 0xb3 at offset 0, line 1" in r.stderr, r.stderr
    assert EXPECTED in r.stderr and "Traceback" not in r.stderr
