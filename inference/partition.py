"""Cutting an ONNX model into a chain of partitions.

Theory of operation. The nodes are put in one topological order (the file's
own when it is already one, which ONNX requires; otherwise a stable Kahn sort).
A *cut at position p* splits that order into ``nodes[:p]`` and ``nodes[p:]``.
The tensors that *cross* it are those made before p (or graph inputs) and read
at or after p: the activations the first part must hand to the second. With,
for every tensor, the index of its producer and of its last reader, one sweep
over the order gives every position's crossing set (a tensor is live from its
producer to its last reader); a position where exactly one tensor crosses is a
single-tensor cut — that tensor dominates everything after it, graph inputs
aside. Positions where a few tensors cross (a skip connection, an FPN's
laterals) are cuts too, reported with their tensors and bytes, and priced by
the planner like any other.

What never crosses: initializers (each part gets a copy of the ones it reads)
and nodes computed from weights and constants alone (``Constant``, an
``Identity`` of a weight, shape arithmetic on constants: cloned into each part
that reads them, so a weight alias made at the top of the graph does not pin
every cut open). Graph
outputs made early (an exit head) leave the part that makes them; they do not
travel down the chain.

Fusion groups are never cut. onnxruntime fuses a Conv/ConvTranspose/Gemm/
MatMul with a following BatchNormalization (folded into the weights), Add
(bias or residual: FusedConv's ``Z``, Conv+Add+Relu) and one activation
(Relu, Clip, LeakyRelu, Sigmoid, Tanh, HardSigmoid); it does so only while
each link's output has exactly one reader and is not a graph output. We
follow the same chain from every such anchor and refuse any position strictly
inside it, so a partition never loses a fusion the whole model had — and a cut
never lands between a conv and its activation.

Nodes with subgraphs (If, Loop, Scan) are atomic by construction: a cut falls
between nodes, and the outer-scope names a subgraph reads count as the node's
inputs. Models that carry recurrent state from call to call cannot be split
into independent stateless parts and are refused, naming the node: an RNN/GRU/
LSTM whose initial state comes from a graph input (the caller feeds the last
state back, as silero-vad does), or a Loop/Scan whose carried value is a graph
input and comes back out as a graph output.

Slicing is cheap: each part is built from its node range, its crossing tensors'
types (from one shape-inference run on the weightless graph) and only the
initializers it reads. Nothing is re-checked; callers (tests) may run
``onnx.checker`` on a part.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import onnx
from onnx import helper

from inference.errors import InferenceError

FUSION_ANCHORS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
FUSION_FOLLOWERS = frozenset({"BatchNormalization", "Add"})
FUSION_ACTIVATIONS = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid"})
NONDETERMINISTIC_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                                  "Multinomial", "Bernoulli"})
SMALL_INITIALIZER = 64  # elements; shape inference keeps these, whose values can decide shapes
RECURRENT_OPS = {"RNN": (5,), "GRU": (5,), "LSTM": (5, 6)}  # op -> initial state input slots


@dataclass(frozen=True, slots=True)
class Cut:
    """A place to split the model: before node ``position`` of the topological order.

    ``tensors`` cross it (made before, read after), in the order they are made;
    ``nbytes`` is what they weigh for one batch item (symbolic dims count as 1),
    or None when shape inference could not size one of them.
    """

    position: int
    tensors: tuple[str, ...]
    nbytes: int | None

    @property
    def single(self) -> bool:
        """Whether exactly one tensor crosses (the cut the planner prefers)."""
        return len(self.tensors) == 1


class PartitionPlan:
    """One model's topological order, its cuts, and the slicing of parts from it."""

    def __init__(self, model: onnx.ModelProto | bytes):
        self.model = model = _check_model(model)
        graph = model.graph
        self._initializers = {t.name for t in graph.initializer} | {t.name for t in graph.sparse_initializer}
        every = list(graph.node)
        constant = _constant_nodes(every, self._initializers)
        self._constant_nodes = [every[i] for i in constant]
        self._constants = {out: node for node in self._constant_nodes for out in node.output if out}
        nodes = [node for i, node in enumerate(every) if i not in constant]
        self._graph_inputs = [v.name for v in graph.input if v.name not in self._initializers]
        self.nodes: list[onnx.NodeProto] = _topological(nodes, set(self._graph_inputs) | self._initializers | set(self._constants))
        self._reads = [_reads(node) for node in self.nodes]
        _refuse_recurrent_state(graph, set(self._graph_inputs))
        self._producer = {name: i for i, node in enumerate(self.nodes) for name in node.output if name}
        self._types = _tensor_types(model)
        self._fusion_spans = _fusion_spans(self.nodes, self._reads, {v.name for v in graph.output})
        self._forbidden = {p for lo, hi in self._fusion_spans for p in range(lo + 1, hi + 1)}

    def __len__(self) -> int:
        return len(self.nodes)

    def _is_value(self, name: str) -> bool:
        """Whether ``name`` is data that must travel (not empty, a weight or a constant)."""
        return bool(name) and name not in self._initializers and name not in self._constants

    def crossing(self) -> list[list[str]]:
        """For every position 0..len, the tensors crossing it, in the order they are made."""
        n = len(self.nodes)
        last_read: dict[str, int] = {}
        for i, reads in enumerate(self._reads):
            for name in reads:
                if self._is_value(name):
                    last_read[name] = i
        born: list[list[str]] = [[] for _ in range(n + 1)]  # live from this position on
        for name in self._graph_inputs:
            if name in last_read:
                born[0].append(name)
        for i, node in enumerate(self.nodes):
            born[i + 1].extend(out for out in node.output if out in last_read and last_read[out] > i)
        live: dict[str, None] = {}  # insertion-ordered set
        result = []
        for p in range(n + 1):
            for name in born[p]:
                live[name] = None
            for name in [name for name in live if last_read[name] < p]:
                del live[name]
            result.append(list(live))
        return result

    def cuts(self, max_tensors: int | None = None) -> list[Cut]:
        """Every fusion-safe, declarable cut between two nodes; optionally only those carrying at most ``max_tensors``.

        Declarable: onnx's shape inference knows each crossing tensor's type
        and rank, so the parts can declare them (ONNX requires it).
        """
        found = []
        for p, tensors in enumerate(self.crossing()):
            if p == 0 or p == len(self.nodes) or p in self._forbidden:
                continue
            if max_tensors is not None and len(tensors) > max_tensors:
                continue
            if not all(self._declarable(name) for name in tensors):
                continue  # onnx could not infer a type and rank for a part's input (declare it to cut here)
            found.append(Cut(p, tuple(tensors), self._nbytes(tensors)))
        return found

    def _nbytes(self, names: Iterable[str]) -> int | None:
        total = 0
        for name in names:
            size = _tensor_nbytes(self._types.get(name))
            if size is None:
                return None
            total += size
        return total

    def split(self, cuts: Sequence[int | Cut]) -> list[onnx.ModelProto]:
        """The parts between ``cuts`` (positions or Cuts, increasing), first to last."""
        positions = [c.position if isinstance(c, Cut) else int(c) for c in cuts]
        n = len(self.nodes)
        for p in positions:
            if not 0 < p < n:
                raise InferenceError(f"inference: cut position {p} is outside 1..{n - 1} for this {n}-node model")
            if p in self._forbidden:
                lo, hi = next(span for span in self._fusion_spans if span[0] < p <= span[1])
                raise InferenceError(
                    f"inference: cut at {p} falls inside the fusion group {self.nodes[lo].name or lo!r}.."
                    f"{self.nodes[hi].name or hi!r}; choose a position from cuts()"
                )
        if positions != sorted(set(positions)):
            raise InferenceError(f"inference: cut positions must be strictly increasing, got {positions}")
        crossing = self.crossing()
        bounds = [0, *positions, n]
        outputs_by_producer = self._graph_outputs_by_part(bounds)
        return [
            self._part(k, bounds[k], bounds[k + 1], crossing[bounds[k]], crossing[bounds[k + 1]], outputs_by_producer[k])
            for k in range(len(bounds) - 1)
        ]

    def _graph_outputs_by_part(self, bounds: list[int]) -> list[list[onnx.ValueInfoProto]]:
        parts: list[list[onnx.ValueInfoProto]] = [[] for _ in range(len(bounds) - 1)]
        for value in self.model.graph.output:
            made_at = self._producer.get(value.name)
            # An output that no node makes (a passed-through input or a weight) leaves the first part.
            k = 0 if made_at is None else next(k for k in range(len(parts)) if bounds[k] <= made_at < bounds[k + 1])
            parts[k].append(value)
        return parts

    def _part(self, k: int, lo: int, hi: int, inputs: list[str], handed_on: list[str],
              own_outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
        source = self.model.graph
        nodes = self.nodes[lo:hi]
        read = {name for reads in self._reads[lo:hi] for name in reads}
        # A graph output that is a passed-through input, a weight or a constant is read by no node.
        own_names = {v.name for v in own_outputs}
        read |= own_names
        constants = self._constants_for(read)
        read |= {name for node in constants for name in _reads(node)}
        model = onnx.ModelProto(
            ir_version=self.model.ir_version,
            producer_name=self.model.producer_name,
            producer_version=self.model.producer_version,
            domain=self.model.domain,
            model_version=self.model.model_version,
            doc_string=f"part {k} (nodes {lo}..{hi - 1}) of {source.name}",
        )
        model.opset_import.extend(self.model.opset_import)
        model.functions.extend(self.model.functions)
        graph = model.graph  # filled in place: the weights are copied once
        graph.name = f"{source.name}.part{k}"
        graph.node.extend(constants + nodes)
        graph.initializer.extend(t for t in source.initializer if t.name in read)
        graph.sparse_initializer.extend(t for t in source.sparse_initializer if t.values.name in read)
        # Inputs: what this part reads, and what it only passes on (a graph input a later part reads).
        passed = set(handed_on) | own_names
        graph.input.extend(self._value_info(name) for name in inputs if name in read or name in passed)
        if k == 0:  # an output that is a graph input, which no node reads
            graph.input.extend(self._value_info(v.name) for v in own_outputs
                               if v.name in self._graph_inputs and v.name not in inputs)
        graph.output.extend(own_outputs)
        graph.output.extend(self._value_info(name) for name in handed_on if name not in own_names)
        return model

    def _constants_for(self, read: set[str]) -> list[onnx.NodeProto]:
        """The constant nodes that make what ``read`` needs, with what they read in turn, in graph order."""
        needed: set[int] = set()
        todo = [self._constants[name] for name in read if name in self._constants]
        while todo:
            node = todo.pop()
            if id(node) not in needed:
                needed.add(id(node))
                todo.extend(self._constants[name] for name in node.input if name in self._constants)
        return [node for node in self._constant_nodes if id(node) in needed]

    def _declarable(self, name: str) -> bool:
        """Whether a part can declare ``name`` as an input or output (its type and rank are known)."""
        value = self._types.get(name)
        return value is not None and bool(value.type.tensor_type.elem_type) and value.type.tensor_type.HasField("shape")

    def _value_info(self, name: str) -> onnx.ValueInfoProto:
        value = self._types.get(name)
        if not self._declarable(name):
            raise InferenceError(
                f"inference: cannot cut across tensor {name!r}: shape inference gave it no type or rank; "
                "declare it in the model's value_info, or cut elsewhere"
            )
        return value


def find_cuts(model: onnx.ModelProto | bytes, max_tensors: int | None = None) -> list[Cut]:
    """Every fusion-safe cut of ``model`` (see ``PartitionPlan.cuts``)."""
    return PartitionPlan(model).cuts(max_tensors)


def split(model: onnx.ModelProto | bytes, cuts: Sequence[int | Cut]) -> list[onnx.ModelProto]:
    """``model`` sliced at ``cuts`` into a chain of parts (see ``PartitionPlan.split``)."""
    return PartitionPlan(model).split(cuts)


def run_chain(
    parts: Sequence[onnx.ModelProto],
    inputs: Mapping[str, Any],
    run: Callable[[int, Mapping[str, Any]], Mapping[str, Any]],
) -> dict[str, Any]:
    """Run ``parts`` in order through ``run(k, feeds)``; every tensor the caller gave or a part returned.

    Each part is fed its declared inputs from the caller's ``inputs`` and what
    earlier parts returned, so the whole model's outputs are all in the result.
    """
    values = dict(inputs)
    for k, part in enumerate(parts):
        missing = [v.name for v in part.graph.input if v.name not in values]
        if missing:
            raise InferenceError(f"inference: part {k} needs {missing}, which neither the caller nor an earlier part gave")
        values.update(run(k, {v.name: values[v.name] for v in part.graph.input}))
    return values


def _check_model(model: object) -> onnx.ModelProto:
    if isinstance(model, (bytes, bytearray)):
        try:
            model = onnx.load_model_from_string(bytes(model))
        except Exception as exc:
            raise InferenceError(f"inference: these bytes are not an ONNX model: {exc}") from exc
    if not isinstance(model, onnx.ModelProto):
        raise InferenceError(f"inference: expected an onnx.ModelProto to partition, got {type(model).__name__}")
    if not model.graph.node:
        raise InferenceError("inference: the model has no nodes, so there is nothing to partition")
    if not model.graph.output:
        raise InferenceError("inference: the model declares no outputs; it cannot be run, let alone partitioned")
    if not model.opset_import:
        raise InferenceError("inference: the model has no opset_import; it is not a valid ONNX model")
    return model


def _constant_nodes(nodes: Sequence[onnx.NodeProto], initializers: set[str]) -> set[int]:
    """Indices of nodes computed from weights and constants alone (``Constant``, ``Identity`` of a
    weight, shape arithmetic on constants): cloned into the parts that read them, they never cross a cut."""
    constant: set[int] = set()
    known = set(initializers)
    changed = True
    while changed:  # one pass when the file is sorted, as ONNX requires
        changed = False
        for i, node in enumerate(nodes):
            if i in constant or node.op_type in NONDETERMINISTIC_OPS:
                continue
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                continue
            if all(name in known for name in node.input if name):
                constant.add(i)
                known.update(node.output)
                changed = True
    return constant


def _reads(node: onnx.NodeProto) -> list[str]:
    """Names ``node`` reads: its inputs, then what its subgraphs read from the outer scope."""
    names = [name for name in node.input if name]
    for attr in node.attribute:
        for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
            names.extend(n for n in _outer_reads(sub) if n not in names)
    return names


def _outer_reads(graph: onnx.GraphProto) -> list[str]:
    """Names a subgraph reads but does not define itself (so they come from outer scopes)."""
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    defined |= {t.values.name for t in graph.sparse_initializer}
    found: dict[str, None] = {}
    for node in graph.node:
        for name in _reads(node):
            if name not in defined:
                found[name] = None
        defined.update(node.output)
    for value in graph.output:
        if value.name not in defined:
            found[value.name] = None
    return list(found)


def _topological(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """A topological order of ``nodes``: Kahn's, taking the earliest ready node, so a sorted file keeps its order."""
    producer = {name: i for i, node in enumerate(nodes) for name in node.output if name}
    waiting = [0] * len(nodes)
    readers: list[list[int]] = [[] for _ in nodes]
    for i, node in enumerate(nodes):
        for name in set(_reads(node)):
            if name in producer:
                waiting[i] += 1
                readers[producer[name]].append(i)
            elif name not in available:
                raise InferenceError(
                    f"inference: node {node.name or node.op_type!r} reads {name!r}, which no node, input or "
                    "initializer provides; the model is malformed"
                )
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for j in readers[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):
        stuck = next(nodes[i] for i, count in enumerate(waiting) if count)
        raise InferenceError(f"inference: the graph has a cycle through node {stuck.name or stuck.op_type!r}")
    return order


def _fusion_spans(nodes: list[onnx.NodeProto], reads: list[list[str]], graph_outputs: set[str]) -> list[tuple[int, int]]:
    """(first, last) positions of every fusion group onnxruntime could form (see the module doc)."""
    readers: dict[str, list[int]] = {}
    for i, names in enumerate(reads):
        for name in names:
            readers.setdefault(name, []).append(i)
    spans = []
    for i, node in enumerate(nodes):
        if node.op_type not in FUSION_ANCHORS:
            continue
        last, seen = i, set()
        while True:
            out = nodes[last].output[0] if nodes[last].output else ""
            after = readers.get(out, [])
            if not out or out in graph_outputs or len(after) != 1:
                break
            follower = nodes[after[0]]
            if follower.op_type in FUSION_FOLLOWERS and follower.op_type not in seen:
                seen.add(follower.op_type)
                last = after[0]
            elif follower.op_type in FUSION_ACTIVATIONS:
                last = after[0]
                break
            else:
                break
        if last > i:
            spans.append((i, last))
    return spans


def _refuse_recurrent_state(graph: onnx.GraphProto, graph_inputs: set[str]) -> None:
    """Raise if the model carries state from one call to the next (see the module doc)."""
    from_caller = _tainted(graph, {name: frozenset([name]) for name in graph_inputs})
    outputs = {v.name for v in graph.output}
    for node in _all_nodes(graph):
        slots = RECURRENT_OPS.get(node.op_type, ())
        for slot in slots:
            if slot < len(node.input) and node.input[slot] in from_caller:
                raise InferenceError(
                    f"inference: cannot partition: {node.op_type} node {node.name or node.output[0]!r} takes its "
                    f"initial state {node.input[slot]!r} from the caller (made from graph inputs "
                    f"{sorted(from_caller[node.input[slot]])}), so the model carries recurrent state between calls; "
                    "serve it whole on one node"
                )
        if node.op_type in ("Loop", "Scan"):
            carried = _loop_carried(node)
            for initial, final in carried:
                if initial in graph_inputs and final in outputs:
                    raise InferenceError(
                        f"inference: cannot partition: {node.op_type} node {node.name or node.output[0]!r} carries "
                        f"{initial!r} -> {final!r} from one call to the next (a graph input fed back from a graph "
                        "output); serve it whole on one node"
                    )


def _loop_carried(node: onnx.NodeProto) -> list[tuple[str, str]]:
    """(initial input, final output) pairs of a Loop's or Scan's carried state."""
    if node.op_type == "Loop":
        return list(zip(node.input[2:], node.output))  # inputs: M, cond, v_initial...; outputs: v_final..., scans
    body = next(a.g for a in node.attribute if a.name == "body")
    scans = next((a.i for a in node.attribute if a.name == "num_scan_inputs"), 0)
    n_state = len(body.input) - scans
    return list(zip(node.input[:n_state], node.output[:n_state]))


def _all_nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                yield from _all_nodes(sub)


def _tainted(graph: onnx.GraphProto, seeds: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """Names (in ``graph`` and its subgraphs) computed from the seeds, each mapped to the seeds' origins."""
    tainted = dict(seeds)
    for node in graph.node:
        explicit = frozenset().union(*(tainted[name] for name in node.input if name in tainted))
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                inner = dict(tainted)
                if explicit:  # a Loop's or Scan's formal inputs carry what the node was given
                    inner.update((v.name, explicit) for v in sub.input)
                tainted.update(_tainted(sub, inner))
        origins = explicit.union(*(tainted[name] for name in _reads(node) if name in tainted))
        if origins:
            tainted.update((name, origins) for name in node.output if name)
    return tainted


def _tensor_types(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Type and shape of every tensor, from one shape-inference run on the graph without its weights."""
    graph = model.graph
    light = onnx.GraphProto(name=graph.name)
    light.node.extend(graph.node)
    light.input.extend(graph.input)
    declared = {v.name for v in graph.input}
    # Big weights enter as typed inputs: shape inference needs their shapes, not their bytes. Small
    # ones (Reshape targets, Slice bounds) stay, since shapes are computed from their values.
    for t in graph.initializer:
        if t.name in declared:
            continue
        if _count(t.dims) <= SMALL_INITIALIZER:
            light.initializer.append(t)
        else:
            light.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    light.output.extend(graph.output)
    light.value_info.extend(graph.value_info)
    shell = onnx.ModelProto(ir_version=model.ir_version)
    shell.opset_import.extend(model.opset_import)
    shell.functions.extend(model.functions)
    shell.graph.CopyFrom(light)
    try:
        inferred = onnx.shape_inference.infer_shapes(shell, data_prop=True).graph
    except Exception:  # a model onnx cannot infer still partitions; sizes just go unknown
        inferred = light
    types = {}
    for value in [*inferred.input, *inferred.value_info, *inferred.output]:
        if value.type.HasField("tensor_type"):
            types[value.name] = value
    for value in graph.output:  # the model's own declarations win (they keep symbolic dim names)
        types[value.name] = value
    return types


def _count(dims: Iterable[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def _tensor_nbytes(value: onnx.ValueInfoProto | None) -> int | None:
    if value is None or not value.type.tensor_type.HasField("shape"):
        return None
    tensor = value.type.tensor_type
    try:
        itemsize = helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize
    except Exception:
        return None
    count = 1
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            count *= dim.dim_value
        elif dim.HasField("dim_value"):
            continue  # some exporters (Paddle) write -1 for a dynamic dimension
        elif not dim.HasField("dim_param"):
            return None  # an unknown, unnamed dimension
    return count * itemsize
