"""Every public boundary answers bad input with an error that names the problem (issue: reliability).

Model-call and config errors are listed in test_model.py, CLI and checkpoint errors in test_train.py,
tokenizer errors in test_tokenizer.py; this file covers the loaders of transformers-format directories.
"""
import json
import os

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
