"""specs/gpt2_small.nn against transformers' GPT2LMHeadModel (tiny sizes, float32, eval mode):
its folders, hub-style files and shards load through the spec's weights section and give
transformers' logits; a folder exported from the spec loads with `from_pretrained`."""
from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file

from nnspec.weights.hf import write_hf_folder

from .conftest import SETS, gpt2_spec, run_cli, tokens

ATOL = 1e-5


def _logits(model, x):
    with torch.no_grad():
        out = model(x)
    return out.logits if hasattr(out, "logits") else out


def test_save_pretrained_folder_gives_transformers_logits(reference, tmp_path):
    reference.save_pretrained(tmp_path)
    spec = gpt2_spec()
    x = tokens()
    want = _logits(reference, x)
    fresh = spec.build().eval()
    assert not torch.allclose(_logits(fresh, x), want, atol=1e-2), "random init must differ"
    loaded = spec.build(weights=tmp_path).eval()
    torch.testing.assert_close(_logits(loaded, x), want, atol=ATOL, rtol=0)
    # tied: the head is the embedding, though save_pretrained did not write lm_head.weight
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()


def test_hub_style_file_without_prefix_and_with_mask_buffers(reference, tmp_path):
    """The original hub checkpoint's layout: no `transformer.` prefix, the causal masks stored
    as `h.N.attn.bias`: rename and drop bring it onto the model."""
    sd = {k.removeprefix("transformer."): v.clone() for k, v in reference.state_dict().items()
          if k != "lm_head.weight"}
    for i in range(2):
        sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 32, 32))
        sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(sd, str(tmp_path / "gpt2.safetensors"))
    loaded = gpt2_spec().build(weights=tmp_path / "gpt2.safetensors").eval()
    x = tokens()
    torch.testing.assert_close(_logits(loaded, x), _logits(reference, x), atol=ATOL, rtol=0)


def test_sharded_folder(reference, tmp_path):
    reference.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    loaded = gpt2_spec().build(weights=tmp_path).eval()
    x = tokens()
    torch.testing.assert_close(_logits(loaded, x), _logits(reference, x), atol=ATOL, rtol=0)


def test_pytorch_model_bin_folder(reference, tmp_path):
    """A folder holding pytorch_model.bin (a pickle) is read with the weights-only unpickler."""
    torch.save(reference.state_dict(), tmp_path / "pytorch_model.bin")
    loaded = gpt2_spec().build(weights=tmp_path).eval()
    x = tokens()
    torch.testing.assert_close(_logits(loaded, x), _logits(reference, x), atol=ATOL, rtol=0)


def test_exported_folder_loads_with_from_pretrained(tmp_path):
    from transformers import GPT2LMHeadModel

    spec = gpt2_spec()
    torch.manual_seed(3)
    model = spec.build().eval()
    write_hf_folder(model.state_dict(), spec, tmp_path / "hf")
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    x = tokens()
    torch.testing.assert_close(_logits(theirs, x), _logits(model, x), atol=ATOL, rtol=0)
    # and back: the exported folder loads into the spec
    again = spec.build(weights=tmp_path / "hf").eval()
    torch.testing.assert_close(_logits(again, x), _logits(model, x), atol=0, rtol=0)


def test_export_weights_hf_command(tmp_path, capsys):
    from transformers import GPT2LMHeadModel

    spec = gpt2_spec()
    torch.manual_seed(4)
    model = spec.build().eval()
    torch.save({"model": model.state_dict()}, tmp_path / "step.pt")  # a one-process checkpoint
    code, out, err = run_cli(capsys, "export-weights", tmp_path / "step.pt", "-o", tmp_path / "hf",
                             "--hf", "--spec", "specs/gpt2_small.nn", *SETS)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "hf").iterdir() if not p.name.startswith(".")) \
        == ["config.json", "model.safetensors"]
    conv1d = load_file(str(tmp_path / "hf" / "model.safetensors"))["transformer.h.0.mlp.c_fc.weight"]
    assert list(conv1d.shape) == [16, 64], "Conv1D weights are written [in, out]"
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    x = tokens()
    torch.testing.assert_close(_logits(theirs, x), _logits(model, x), atol=ATOL, rtol=0)


def test_export_weights_hf_needs_a_counterpart(tmp_path, capsys):
    spec_file = tmp_path / "mlp.nn"
    spec_file.write_text("model mlp {\n  input x: float[4]\n  fc: linear(2)\n}\n")
    torch.save({"model": {"fc.weight": torch.zeros(2, 4), "fc.bias": torch.zeros(2)}},
               tmp_path / "step.pt")
    code, _, err = run_cli(capsys, "export-weights", tmp_path / "step.pt", "-o", tmp_path / "hf",
                           "--hf", "--spec", spec_file)
    assert code == 2 and "declares no Hugging Face counterpart" in err and "Traceback" not in err
    assert not (tmp_path / "hf").exists()
    code, _, err = run_cli(capsys, "export-weights", tmp_path / "step.pt", "-o", tmp_path / "hf",
                           "--hf")
    assert code == 2 and err.startswith("nnspec: error: --hf needs --spec")
