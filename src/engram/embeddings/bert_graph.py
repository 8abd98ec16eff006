"""The ONNX graph of a BERT encoder, written directly from its safetensors weights: no torch, no transformers.

Covers the BERT family sentence-transformers models such as all-MiniLM-L6-v2 use (absolute position embeddings,
post-layer-norm, GELU). The graph takes input_ids, attention_mask and token_type_ids ([batch, tokens], int64) and
returns the last hidden state `token_embeddings` ([batch, tokens, hidden]); pooling and normalising stay in numpy
(`engram.embeddings.onnx.pool`), as for every other export. Needs the `onnx` and `safetensors` packages (build time
only: serving needs neither).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engram.core.errors import BackendUnavailable
from engram.embeddings.pipeline import Pipeline, read_json

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto, TensorProto

#: Model types whose config and weight names this builder understands (same layout as BertModel).
SUPPORTED_MODEL_TYPES = frozenset({"bert"})
#: ONNX opset of the graph: 17 is the first with LayerNormalization, and onnxruntime's quantiser handles it.
OPSET = 17
WEIGHTS_FILE = "model.safetensors"


def supports(pipeline: Pipeline) -> bool:
    """Whether `pipeline`'s transformer can be built by this module (a BERT config and safetensors weights)."""
    config_file = pipeline.transformer_dir / "config.json"
    if not (pipeline.transformer_dir / WEIGHTS_FILE).is_file() or not config_file.is_file():
        return False
    config = read_json(config_file)
    return (
        config.get("model_type") in SUPPORTED_MODEL_TYPES
        and config.get("hidden_act", "gelu") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
    )


def build_bert_graph(pipeline: Pipeline, dest: Path) -> None:
    """Write the fp32 ONNX graph of `pipeline`'s BERT transformer to `dest` (one file, weights inside)."""
    import onnx
    from safetensors.numpy import load_file

    config = read_json(pipeline.transformer_dir / "config.json")
    weights = load_file(str(pipeline.transformer_dir / WEIGHTS_FILE))
    graph = _BertGraph(config, weights)
    model = graph.model()
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(dest))


class _BertGraph:
    """Accumulates the nodes and initializers of one BERT encoder."""

    def __init__(self, config: dict[str, Any], weights: dict[str, npt.NDArray[Any]]) -> None:
        self._config = config
        # Checkpoints saved from BertForX carry a `bert.` prefix; sentence-transformers' do not.
        self._weights = {name.removeprefix("bert."): array for name, array in weights.items()}
        self._nodes: list[NodeProto] = []
        self._initializers: list[TensorProto] = []
        self._names: set[str] = set()
        self._hidden = int(config["hidden_size"])
        self._heads = int(config["num_attention_heads"])
        if self._hidden % self._heads:
            raise BackendUnavailable(f"hidden_size {self._hidden} is not a multiple of {self._heads} attention heads.")
        self._eps = float(config.get("layer_norm_eps", 1e-12))

    def _weight(self, name: str, *, transpose: bool = False) -> str:
        """Register a checkpoint tensor as an initializer (a Linear weight transposed to [in, out])."""
        from onnx import numpy_helper

        try:
            array = self._weights[name]
        except KeyError as exc:
            raise BackendUnavailable(f"The checkpoint has no tensor '{name}'; it is not a BERT encoder.") from exc
        array = np.ascontiguousarray(array.T if transpose else array, dtype=np.float32)
        self._initializers.append(numpy_helper.from_array(array, name))
        return name

    def _constant(self, name: str, value: npt.NDArray[Any]) -> str:
        from onnx import numpy_helper

        self._initializers.append(numpy_helper.from_array(value, name))
        return name

    def _node(self, op: str, inputs: list[str], name: str, **attributes: Any) -> str:
        from onnx import helper

        if name in self._names:
            raise AssertionError(f"duplicate node output {name}")
        self._names.add(name)
        self._nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    def _linear(self, x: str, prefix: str, out: str) -> str:
        product = self._node("MatMul", [x, self._weight(f"{prefix}.weight", transpose=True)], f"{out}/matmul")
        return self._node("Add", [product, self._weight(f"{prefix}.bias")], out)

    def _layer_norm(self, x: str, prefix: str, out: str) -> str:
        scale, bias = self._weight(f"{prefix}.weight"), self._weight(f"{prefix}.bias")
        return self._node("LayerNormalization", [x, scale, bias], out, axis=-1, epsilon=self._eps)

    def _embeddings(self) -> str:
        words = self._node("Gather", [self._weight("embeddings.word_embeddings.weight"), "input_ids"], "emb/words")
        types = self._node(
            "Gather", [self._weight("embeddings.token_type_embeddings.weight"), "token_type_ids"], "emb/types"
        )
        # Positions 0..tokens-1, the same for every row: broadcast over the batch.
        shape = self._node("Shape", ["input_ids"], "emb/shape")
        length = self._node("Gather", [shape, self._constant("one", np.array(1, np.int64))], "emb/length")
        positions = self._node(
            "Range",
            [self._constant("zero", np.array(0, np.int64)), length, self._constant("step", np.array(1, np.int64))],
            "emb/position_ids",
        )
        place = self._node(
            "Gather", [self._weight("embeddings.position_embeddings.weight"), positions], "emb/positions"
        )
        summed = self._node("Add", [self._node("Add", [words, types], "emb/words_types"), place], "emb/sum")
        return self._layer_norm(summed, "embeddings.LayerNorm", "emb/out")

    def _attention_bias(self) -> str:
        """0 where a token may be attended to, the float32 minimum on padding: [batch, 1, 1, tokens]."""
        mask = self._node("Cast", ["attention_mask"], "mask/float", to=1)  # 1 = FLOAT
        masked = self._node("Sub", [self._constant("mask/one", np.array(1.0, np.float32)), mask], "mask/inverted")
        lowest = self._constant("mask/lowest", np.array(np.finfo(np.float32).min, np.float32))
        bias = self._node("Mul", [masked, lowest], "mask/bias2d")
        return self._node("Unsqueeze", [bias, self._constant("mask/axes", np.array([1, 2], np.int64))], "mask/bias")

    def _layer(self, x: str, index: int, bias: str) -> str:
        prefix, tag = f"encoder.layer.{index}", f"layer{index}"
        head_dim = self._hidden // self._heads
        split = self._constant(f"{tag}/split", np.array([0, 0, self._heads, head_dim], np.int64))
        merged = self._constant(f"{tag}/merge", np.array([0, 0, self._hidden], np.int64))

        def heads(kind: str, perm: list[int]) -> str:
            projected = self._linear(x, f"{prefix}.attention.self.{kind}", f"{tag}/{kind}")
            reshaped = self._node("Reshape", [projected, split], f"{tag}/{kind}/heads")
            return self._node("Transpose", [reshaped], f"{tag}/{kind}/t", perm=perm)

        query = heads("query", [0, 2, 1, 3])  # [batch, heads, tokens, dim]
        key = heads("key", [0, 2, 3, 1])  # [batch, heads, dim, tokens]
        value = heads("value", [0, 2, 1, 3])
        scores = self._node("MatMul", [query, key], f"{tag}/scores")
        scale = self._constant(f"{tag}/scale", np.array(1.0 / math.sqrt(head_dim), np.float32))
        scaled = self._node("Mul", [scores, scale], f"{tag}/scaled")
        probs = self._node("Softmax", [self._node("Add", [scaled, bias], f"{tag}/masked")], f"{tag}/probs", axis=-1)
        context = self._node("MatMul", [probs, value], f"{tag}/context")
        context = self._node("Transpose", [context], f"{tag}/context/t", perm=[0, 2, 1, 3])
        context = self._node("Reshape", [context, merged], f"{tag}/context/merged")
        attended = self._linear(context, f"{prefix}.attention.output.dense", f"{tag}/attn_out")
        x = self._layer_norm(
            self._node("Add", [attended, x], f"{tag}/attn_residual"),
            f"{prefix}.attention.output.LayerNorm",
            f"{tag}/attn_norm",
        )
        inner = self._linear(x, f"{prefix}.intermediate.dense", f"{tag}/ffn_in")
        activated = self._gelu(inner, f"{tag}/gelu")
        out = self._linear(activated, f"{prefix}.output.dense", f"{tag}/ffn_out")
        return self._layer_norm(
            self._node("Add", [out, x], f"{tag}/ffn_residual"), f"{prefix}.output.LayerNorm", f"{tag}/out"
        )

    def _gelu(self, x: str, tag: str) -> str:
        """The exact (erf) GELU BERT uses: 0.5 * x * (1 + erf(x / sqrt(2)))."""
        root2 = self._constant(f"{tag}/sqrt2", np.array(math.sqrt(2.0), np.float32))
        erf = self._node("Erf", [self._node("Div", [x, root2], f"{tag}/div")], f"{tag}/erf")
        one = self._constant(f"{tag}/one", np.array(1.0, np.float32))
        half = self._constant(f"{tag}/half", np.array(0.5, np.float32))
        gate = self._node("Mul", [self._node("Add", [erf, one], f"{tag}/add"), half], f"{tag}/gate")
        return self._node("Mul", [x, gate], f"{tag}/out")

    def model(self) -> ModelProto:
        """The whole encoder as an ONNX model."""
        from onnx import TensorProto, helper

        hidden = self._embeddings()
        bias = self._attention_bias()
        for index in range(int(self._config["num_hidden_layers"])):
            hidden = self._layer(hidden, index, bias)
        self._nodes.append(helper.make_node("Identity", [hidden], ["token_embeddings"], name="token_embeddings"))
        inputs = [
            helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "tokens"])
            for name in ("input_ids", "attention_mask", "token_type_ids")
        ]
        output = helper.make_tensor_value_info("token_embeddings", TensorProto.FLOAT, ["batch", "tokens", self._hidden])
        graph = helper.make_graph(self._nodes, "bert_encoder", inputs, [output], self._initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="engram")
        # onnxruntime 1.x reads IR version 10 and below; pin it so a newer onnx package does not write 11+.
        model.ir_version = min(model.ir_version, 10)
        return model
