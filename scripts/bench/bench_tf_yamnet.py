"""Our YAMNet dream step against TensorFlow's, alternating in one run, idle and with a busy core.

What is timed, on the same 10 s input (``examples/loop.wav`` looped, 16 kHz) toward the same class
(``violin`` = "Violin, fiddle"):

* **ours** (this tree, PyTorch): forward + input gradient of the mean target logit over the
  patches, as the dream engine computes a step (:class:`dreamsound.engine.objectives.Objective`
  then ``torch.autograd.grad``): from the log-mel (spectrogram domain) and from the samples
  through the differentiable front end (waveform domain). The thread policy is the CLI's
  (:func:`dreamsound.threads.configure_threads` and ``set_wait_policy``, the count polled before
  every step as the dream loop does).
* **tf**: the same two gradients of YAMNet built in TensorFlow/Keras (a model definition written
  here from DESIGN.md section 3: conv 3x3/2, 13 depthwise-separable layers, batch norm without
  scale, epsilon 1e-4, "same" padding, global average pool, dense 521; front end
  ``tf.signal.stft`` magnitude, ``linear_to_mel_weight_matrix``, ``log(mel + 0.001)``), loaded
  from the same ``yamnet.h5``, inside one ``tf.function`` with ``tf.GradientTape``, TensorFlow's
  default threading. Before any timing its outputs are checked against TensorFlow's golden
  outputs (``shared/golden/yamnet_reference.npz``: log-mel, logits, scores, embeddings and the
  input gradient of every clip); a mismatch stops the benchmark.
* **baseline** (with ``--baseline REF``): our step on the code of git commit ``REF``, with that
  commit's thread behaviour: its own CLI policy code when it has the load-following thread count
  (``dreamsound/threads.py``'s ``adapt_threads``), else torch's default count and
  ``OMP_WAIT_POLICY=PASSIVE`` as its CLI set.

Each side is a worker process that loads its model once and answers "time N steps" requests on
stdin/stdout. Rounds alternate the workers (the order rotates each round) and the conditions:
*idle*, then *busy* -- a Python busy loop pinned to one core (``os.sched_setaffinity``) while
every worker takes its turn, stopped after. The table gives median step times and the ratio
TensorFlow / ours (> 1: ours is faster). The two gradients of the sides are compared once
(cosine) so both compute the same thing.

TensorFlow lives in its own virtual environment, never in the project's::

    python3 -m venv /work/tfvenv && /work/tfvenv/bin/pip install tensorflow-cpu h5py
    python -m scripts.bench.bench_tf_yamnet --tf-python /work/tfvenv/bin/python
    python -m scripts.bench.bench_tf_yamnet --baseline f1ee732 --rounds 6 --json

Measure on a quiet machine: the script prints the load average before and after, and
``--wait-quiet S`` waits up to S seconds for the 1-minute load to drop below 1 first.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LOOP = REPO / "examples" / "loop.wav"
DEFAULT_WEIGHTS = REPO.parent / "shared" / "yamnet" / "yamnet.h5"
DEFAULT_GOLDEN = REPO.parent / "shared" / "golden" / "yamnet_reference.npz"
DEFAULT_TF_PYTHON = os.environ.get("DREAMSOUND_TF_PYTHON", "/work/tfvenv/bin/python")
TARGET = "violin"
KINDS = ("spectrogram", "waveform")
#: Protocol lines start with this, so that library chatter on stdout cannot be mistaken for them.
PREFIX = "@@bench "

# YAMNet facts (DESIGN.md section 3), for the TensorFlow side.
SAMPLE_RATE = 16000
WINDOW, HOP, FFT, MELS = 400, 160, 512, 64
FMIN, FMAX, LOG_OFFSET = 125.0, 7500.0, 0.001
PATCH_FRAMES, PATCH_HOP_FRAMES = 96, 48
MIN_SAMPLES, PATCH_HOP_SAMPLES = 15600, 7680
BN_EPSILON = 1e-4
SEPARABLE = ((2, 1, 64), (3, 2, 128), (4, 1, 128), (5, 2, 256), (6, 1, 256), (7, 2, 512),
             (8, 1, 512), (9, 1, 512), (10, 1, 512), (11, 1, 512), (12, 1, 512), (13, 2, 1024),
             (14, 1, 1024))
#: Golden bounds for the TensorFlow model. The goldens come from TensorFlow too, so it must agree
#: to float32 rounding: its oneDNN kernels sum in another order than the eager reference did.
#: Rounding grows with the values, so the logits' bound is relative to the clip's largest
#: logit (``duet5s`` reaches 112: TensorFlow 2.21 on a Sapphire Rapids CPU is 4.3e-4 = 3.8e-6 of
#: it away, with a log-mel identical to the golden one); ``sine440`` is the README's
#: ill-conditioned clip for the log-mel.
TF_BOUNDS = {"log_mel": 1e-4, "logits": 1e-5, "scores": 1e-5, "embeddings": 1e-4}
TF_RELATIVE = {"logits"}
TF_SINE_LOG_MEL = 5e-3
TF_GRAD_COSINE = 0.9999


# -- protocol ----------------------------------------------------------------------------------
def _send(obj: dict[str, Any]) -> None:
    sys.stdout.write(PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _serve(steps: dict[str, Any], info: dict[str, Any], gradients: dict[str, Any],
           thread_count: Any = None) -> None:
    """Answer requests on stdin until ``quit``: ``{"op": "run", "kind": K, "n": N}`` -> the N
    step times (and, with ``thread_count``, the threads each step ended with);
    ``{"op": "grad", "kind": K, "path": P}`` -> the gradient saved to P (.npy). Every answer to
    "run" also gives the minor page faults the N steps took (the pages of freed buffers handed
    back to the kernel and faulted in again)."""
    import numpy as np

    _send({"ready": True, "info": info})
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "quit":
            break
        if request["op"] == "grad":
            np.save(request["path"], gradients[request["kind"]]())
            _send({"ok": True})
            continue
        step = steps[request["kind"]]
        times, counts = [], []
        faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(int(request["n"])):
            prepare, run = step
            argument = prepare()
            started = time.perf_counter()
            run(argument)
            times.append(time.perf_counter() - started)
            if thread_count is not None:
                counts.append(thread_count())
        _send({"times": times, "threads": counts,
               "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before})


# -- the PyTorch side --------------------------------------------------------------------------
def _native_kernels() -> str:
    """Whether this side's YAMNet runs the native 3x3 kernels (and if not, why)."""
    try:
        from dreamsound import native
        from dreamsound.models.yamnet import fused
    except ImportError:  # a baseline from before them
        return "none in this code"
    return "used" if fused.kernels() is not None else f"not used: {native.why_not(fused.SOURCE)}"


def torch_worker(args: argparse.Namespace) -> None:
    """Our YAMNet step (this tree, or a baseline commit when PYTHONPATH points at it)."""
    adapt = None
    reuses_freed_memory = False
    if args.as_baseline:
        # (A baseline keeps torch's default count and PASSIVE, as its CLI did. Its missing
        # modules would be found in the editable install's tree, so do not even try.)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        source = "torch default"
        if args.threads:
            torch.set_num_threads(args.threads)
    else:
        # What the CLI does, in its order: the allocator, the count, then the wait policy, then
        # torch loads. A baseline from before dreamsound/allocator.py must not take ours from
        # the editable install's tree (a module its own package lacks is found there).
        import dreamsound
        from dreamsound.threads import (
            adapt_threads,
            configure_threads,
            governed,
            set_wait_policy,
        )

        if (Path(dreamsound.__file__).parent / "allocator.py").is_file():
            from dreamsound.allocator import reuse_freed_memory

            reuses_freed_memory = reuse_freed_memory()
        source = configure_threads(args.threads, load_torch=False).source
        set_wait_policy(governed=governed())
        source += " (follows the load)" if governed() else ""
        adapt = adapt_threads
        import torch
    import numpy as np

    from dreamsound.audio import load_audio
    from dreamsound.engine.objectives import Objective, resolve_targets
    from dreamsound.models.registry import load_model

    model = load_model("yamnet", args.weights, "cpu")
    if args.input and Path(args.input).is_file():
        wave = np.load(args.input)
    else:
        loop = load_audio(LOOP, sample_rate=model.sample_rate)
        n = round(args.seconds * model.sample_rate)
        wave = np.tile(loop, math.ceil(n / loop.size))[:n].astype(np.float32)
        if args.input:
            np.save(args.input, wave)
    objective = Objective(model, targets=resolve_targets(model, TARGET))
    samples = torch.from_numpy(wave)
    with torch.no_grad():
        log_mel = model.log_mel(samples)

    def spectrogram(param: torch.Tensor) -> torch.Tensor:
        if adapt is not None:  # as the dream loop does before every step
            adapt()
        value, _ = objective(param)
        return torch.autograd.grad(value, param)[0]

    def waveform(param: torch.Tensor) -> torch.Tensor:
        if adapt is not None:
            adapt()
        value, _ = objective(model.log_mel(param))
        return torch.autograd.grad(value, param)[0]

    steps = {"spectrogram": (lambda: log_mel.clone().requires_grad_(True), spectrogram),
             "waveform": (lambda: samples.clone().requires_grad_(True), waveform)}
    for prepare, run in steps.values():
        for _ in range(args.warmup):
            run(prepare())
    gradients = {kind: (lambda p=prepare, r=run: r(p()).numpy()) for kind, (prepare, run)
                 in steps.items()}
    info = {"threads": torch.get_num_threads(), "thread_source": source,
            "native_kernels": "as that commit has them" if args.as_baseline else _native_kernels(),
            "reuses_freed_memory": reuses_freed_memory,
            "wait_policy": os.environ.get("OMP_WAIT_POLICY")
            or f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', 'default')}",
            "torch": torch.__version__,
            "target": objective.targets[0].index, "target_name": objective.targets[0].name,
            "patches": int(model.front_end.patches(log_mel).shape[0]),
            "code": str(Path(sys.modules["dreamsound"].__file__).parent)}
    _serve(steps, info, gradients, torch.get_num_threads)


# -- the TensorFlow side -----------------------------------------------------------------------
def _tf_keras(legacy: bool) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if legacy:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import tf_keras as keras
    else:
        import keras
    return keras


def build_tf_network(keras: Any) -> Any:
    """YAMNet's network as a Keras functional model: patches [P, 96, 64, 1] -> (logits,
    embeddings). Layer names follow the weights (``layer2_depthwise_conv``, ...)."""
    layers = keras.layers

    def unit(x: Any, conv: Any, name: str) -> Any:
        x = conv(x)
        x = layers.BatchNormalization(center=True, scale=False, epsilon=BN_EPSILON,
                                      name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    patches = keras.Input(shape=(PATCH_FRAMES, MELS, 1), name="patches")
    x = unit(patches, layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False,
                                    name="layer1_conv"), "layer1_conv")
    for number, stride, filters in SEPARABLE:
        name = f"layer{number}"
        x = unit(x, layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                           name=f"{name}_depthwise_conv"),
                 f"{name}_depthwise_conv")
        x = unit(x, layers.Conv2D(filters, 1, padding="same", use_bias=False,
                                  name=f"{name}_pointwise_conv"), f"{name}_pointwise_conv")
    embeddings = layers.GlobalAveragePooling2D(name="embeddings")(x)
    logits = layers.Dense(521, name="logits")(embeddings)
    return keras.Model(patches, [logits, embeddings], name="yamnet")


def load_tf_weights(model: Any, path: str) -> None:
    """Copy the Keras ``yamnet.h5`` datasets into ``model``, found by their weight names (the
    group prefix of the file does not matter; the dense layer may be ``logits`` or ``dense``)."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as h5:
        names: list[str] = []
        h5.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) else None)

        def find(suffix: str) -> Any:
            hits = [n for n in names if n.endswith("/" + suffix) or n == suffix]
            if not hits:
                raise SystemExit(f"{path}: no weight {suffix!r}")
            return np.asarray(h5[hits[0]][()])

        for layer in model.layers:
            if layer.name.endswith("_bn"):
                base = layer.name[:-3].replace("_", "/", 1)  # layer2_depthwise_conv_bn
                layer.set_weights([find(f"{base}/bn/beta:0"), find(f"{base}/bn/moving_mean:0"),
                                   find(f"{base}/bn/moving_variance:0")])
            elif layer.name.endswith("_conv"):
                base = layer.name.replace("_", "/", 1)
                kind = "depthwise_kernel:0" if "depthwise" in layer.name else "kernel:0"
                layer.set_weights([find(f"{base}/{kind}")])
            elif layer.name == "logits":
                dense = [n for n in names if n.endswith("/kernel:0")
                         and n.split("/")[-2] in ("logits", "dense")]
                if len(dense) != 1:
                    raise SystemExit(f"{path}: expected one dense layer, found {dense}")
                layer.set_weights([np.asarray(h5[dense[0]][()]),
                                   np.asarray(h5[dense[0][:-len("kernel:0")] + "bias:0"][()])])


def tf_worker(args: argparse.Namespace) -> None:
    """TensorFlow's YAMNet: check against the goldens, then serve timing requests."""
    keras = _tf_keras(args.tf_legacy_keras)
    import numpy as np
    import tensorflow as tf

    network = build_tf_network(keras)
    load_tf_weights(network, args.weights)
    mel_matrix = tf.signal.linear_to_mel_weight_matrix(MELS, FFT // 2 + 1, SAMPLE_RATE, FMIN,
                                                       FMAX)

    def pad(wave: Any) -> Any:
        n = tf.shape(wave)[0]
        padded = tf.maximum(n, MIN_SAMPLES)
        hops = (padded - MIN_SAMPLES + PATCH_HOP_SAMPLES - 1) // PATCH_HOP_SAMPLES
        return tf.pad(wave, [[0, MIN_SAMPLES + hops * PATCH_HOP_SAMPLES - n]])

    def log_mel_of(wave: Any) -> Any:
        magnitude = tf.abs(tf.signal.stft(pad(wave), WINDOW, HOP, FFT,
                                          window_fn=tf.signal.hann_window, pad_end=False))
        return tf.math.log(tf.matmul(magnitude, mel_matrix) + LOG_OFFSET)

    def logits_of(log_mel: Any) -> tuple[Any, Any]:
        patches = tf.signal.frame(log_mel, PATCH_FRAMES, PATCH_HOP_FRAMES, axis=0)
        return network(patches[..., None], training=False)

    compile_kw = {"jit_compile": True} if args.tf_jit else {}
    target = tf.constant(args.target)

    @tf.function(reduce_retracing=True, **compile_kw)
    def spectrogram(log_mel: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(log_mel)
            value = tf.reduce_mean(logits_of(log_mel)[0][:, target])
        return tape.gradient(value, log_mel)

    @tf.function(reduce_retracing=True, **compile_kw)
    def waveform(wave: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(wave)
            value = tf.reduce_mean(logits_of(log_mel_of(wave))[0][:, target])
        return tape.gradient(value, wave)

    parity = check_tf_against_golden(tf, args.golden, log_mel_of, logits_of)
    wave = tf.constant(np.load(args.input))
    log_mel = log_mel_of(wave)
    steps = {"spectrogram": (lambda: log_mel, lambda x: spectrogram(x).numpy()),
             "waveform": (lambda: wave, lambda x: waveform(x).numpy())}
    for prepare, run in steps.values():
        for _ in range(args.warmup):
            run(prepare())
    gradients = {"spectrogram": lambda: spectrogram(log_mel).numpy(),
                 "waveform": lambda: waveform(wave).numpy()}
    info = {"tensorflow": tf.__version__, "keras": keras.__version__,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "TensorFlow's default"),
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads() or "default",
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads() or "default",
            "jit_compile": bool(args.tf_jit), "parity": parity,
            "patches": int(logits_of(log_mel)[0].shape[0])}
    _serve(steps, info, gradients)


def check_tf_against_golden(tf: Any, golden_path: str, log_mel_of: Any, logits_of: Any
                            ) -> dict[str, float]:
    """Worst difference to the goldens per field over every clip; exits if out of bounds."""
    import numpy as np

    golden = np.load(golden_path)
    clips = sorted({k.split("__")[0] for k in golden.files if k.endswith("__waveform")})
    worst = {field: 0.0 for field in TF_BOUNDS} | {"grad_cosine": 1.0}
    failures = []
    for clip in clips:
        wave = tf.constant(golden[f"{clip}__waveform"])
        log_mel = log_mel_of(wave)
        logits, embeddings = logits_of(log_mel)
        ours = {"log_mel": log_mel, "logits": logits, "scores": tf.sigmoid(logits),
                "embeddings": embeddings}
        for field, bound in TF_BOUNDS.items():
            error = float(np.max(np.abs(ours[field].numpy().astype(np.float64)
                                        - golden[f"{clip}__{field}"])))
            worst[field] = max(worst[field], error)
            if field == "log_mel" and clip == "sine440":
                bound = TF_SINE_LOG_MEL
            if field in TF_RELATIVE:
                bound *= max(1.0, float(np.max(np.abs(golden[f"{clip}__{field}"]))))
            if error > bound:
                failures.append(f"{clip} {field} differs by {error:.3g} > {bound:g}")
        index = int(golden[f"{clip}__grad_class_index"])
        with tf.GradientTape() as tape:
            tape.watch(wave)
            value = tf.reduce_sum(tf.sigmoid(logits_of(log_mel_of(wave))[0])[:, index])
        grad = tape.gradient(value, wave).numpy().astype(np.float64)
        reference = golden[f"{clip}__grad"].astype(np.float64)
        cosine = float(grad @ reference / (np.linalg.norm(grad) * np.linalg.norm(reference)))
        worst["grad_cosine"] = min(worst["grad_cosine"], cosine)
        if cosine < TF_GRAD_COSINE:
            failures.append(f"{clip} input gradient cosine {cosine:.6f} < {TF_GRAD_COSINE}")
    if failures:
        sys.stderr.write("TensorFlow model does not match the goldens:\n  "
                         + "\n  ".join(failures) + "\n")
        raise SystemExit(3)
    return worst


# -- the driver --------------------------------------------------------------------------------
class Worker:
    """One side of the benchmark in its own process, spoken to line by line."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path):
        self.name = name
        self.log = log
        with log.open("w") as stderr:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=stderr, text=True, env=env, cwd=REPO)
        self.info = self.receive()["info"]

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(PREFIX):
                return json.loads(line[len(PREFIX):])
        code = self.proc.wait()
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
        raise SystemExit(f"the {self.name} worker stopped (exit code {code}); its stderr ends:\n"
                         f"{tail}")

    def request(self, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self.receive()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request_quit()
            finally:
                self.proc.wait(timeout=30)

    def request_quit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.proc.stdin.flush()


class BusyCore:
    """A Python busy loop pinned to one CPU, for the "one busy core" condition."""

    def __init__(self, cpu: int):
        self.cpu = cpu
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> BusyCore:
        # It stops by itself when this process is gone (killed, or stopped without cleanup).
        code = (f"import os\nos.sched_setaffinity(0, {{{self.cpu}}})\nparent = os.getppid()\n"
                "while os.getppid() == parent:\n    for _ in range(1000000):\n        pass\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(0.3)  # let it start spinning
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


def _wait_quiet(limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while os.getloadavg()[0] >= 1.0 and time.monotonic() < deadline:
        time.sleep(10)


def _export(ref: str) -> str:
    """The package as of git commit ``ref``, exported to a temporary folder (kept until exit)."""
    folder = tempfile.mkdtemp(prefix="dreamsound-baseline-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "dreamsound"],
                             capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
    return folder


def _cosine(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the workers, alternate the rounds, and return every time and the summary."""
    import numpy as np

    if args.wait_quiet:
        _wait_quiet(args.wait_quiet)
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench-tf-yamnet-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    script = str(Path(__file__).resolve())
    common = ["--weights", args.weights, "--seconds", str(args.seconds),
              "--warmup", str(args.warmup), "--input", str(tmp / "input.npy")]
    if args.threads:
        common += ["--threads", str(args.threads)]
    env = dict(os.environ)  # our worker chooses its wait policy as the CLI does
    workers: dict[str, Worker] = {}
    try:
        workers["ours"] = Worker("ours", [sys.executable, script, "--worker", "torch", *common],
                                 env, tmp / "ours.log")
        target = workers["ours"].info["target"]
        tf_cmd = [args.tf_python, script, "--worker", "tf", *common, "--golden", args.golden,
                  "--target", str(target)]
        tf_cmd += ["--tf-legacy-keras"] if args.tf_legacy_keras else []
        tf_cmd += ["--tf-jit"] if args.tf_jit else []
        tf_env = {k: v for k, v in env.items() if k not in (
            "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "PYTHONPATH")}
        # TensorFlow turns its oneDNN kernels on by default only on some Intel CPUs; without
        # them its input gradient is ~5x slower here (AMD EPYC), so the comparison would flatter
        # us. The user's own setting wins.
        tf_env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
        workers["tf"] = Worker("tf", tf_cmd, tf_env, tmp / "tf.log")
        if args.baseline:
            code = _export(args.baseline)
            base_env = dict(env, PYTHONPATH=code + os.pathsep + env.get("PYTHONPATH", ""))
            base_cmd = [sys.executable, script, "--worker", "torch", *common]
            # A commit from before the load-following thread count keeps its CLI's old policy;
            # a later one runs the same policy code as ours (from its own tree).
            threads_py = Path(code) / "dreamsound" / "threads.py"
            if not (threads_py.is_file() and "def adapt_threads(" in threads_py.read_text()):
                base_cmd.append("--as-baseline")
            workers["baseline"] = Worker("baseline", base_cmd, base_env, tmp / "baseline.log")

        agreement = {}
        for kind in KINDS:
            grads = {}
            for name, worker in workers.items():
                path = tmp / f"{name}-{kind}.npy"
                worker.request(op="grad", kind=kind, path=str(path))
                grads[name] = np.load(path)
            agreement[kind] = {f"ours~{name}": _cosine(grads["ours"], grads[name])
                               for name in grads if name != "ours"}

        times: dict[str, dict[str, dict[str, list[float]]]] = {}
        counts: dict[str, dict[str, list[int]]] = {}  # threads after each step, per condition
        faults: dict[str, list[int]] = {}  # minor page faults per step, per worker
        names = list(workers)
        for round_index in range(args.rounds):
            order = names[round_index % len(names):] + names[:round_index % len(names)]
            for condition in args.conditions:
                busy = BusyCore(args.busy_cpu) if condition == "busy" else None
                if busy is not None:
                    busy.__enter__()
                try:
                    for name in order:
                        for kind in KINDS:
                            got = workers[name].request(op="run", kind=kind, n=args.steps)
                            times.setdefault(condition, {}).setdefault(kind, {}).setdefault(
                                name, []).extend(got["times"])
                            faults.setdefault(name, []).append(got["faults"] // args.steps)
                            if got.get("threads"):
                                counts.setdefault(condition, {}).setdefault(name, []).extend(
                                    got["threads"])
                finally:
                    if busy is not None:
                        busy.__exit__()
        infos = {name: worker.info for name, worker in workers.items()}
    finally:
        for worker in workers.values():
            worker.close()
    return {"command": "python -m scripts.bench.bench_tf_yamnet "
                       + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "load_before": load_before, "load_after": os.getloadavg(),
            "cpus": sorted(os.sched_getaffinity(0)), "busy_cpu": args.busy_cpu,
            "seconds": args.seconds, "rounds": args.rounds, "steps_per_round": args.steps,
            "workers": infos, "gradient_cosine": agreement, "times": times,
            "threads_per_step": {c: {n: {str(k): v.count(k) for k in sorted(set(v))}
                                     for n, v in sides.items()} for c, sides in counts.items()},
            "page_faults_per_step": {name: {"median": float(np.median(v)), "max": max(v)}
                                     for name, v in faults.items()},
            "summary": summarize(times)}


def summarize(times: dict[str, dict[str, dict[str, list[float]]]]) -> list[dict[str, Any]]:
    """Median, quartiles and ratios per condition and kind."""
    rows = []
    for condition, kinds in times.items():
        for kind, sides in kinds.items():
            row: dict[str, Any] = {"condition": condition, "kind": kind}
            for name, values in sides.items():
                ordered = sorted(values)
                row[name] = {"median": statistics.median(ordered),
                             "p25": ordered[len(ordered) // 4],
                             "p75": ordered[(3 * len(ordered)) // 4], "n": len(ordered)}
            ours = row["ours"]["median"]
            if "tf" in row:
                row["tf_over_ours"] = row["tf"]["median"] / ours
            if "baseline" in row:
                row["baseline_over_ours"] = row["baseline"]["median"] / ours
            rows.append(row)
    return rows


def print_report(result: dict[str, Any]) -> None:
    """The table, the workers' settings and the exact command."""
    ours, tf = result["workers"]["ours"], result["workers"]["tf"]
    print(f"YAMNet dream step, {result['seconds']:g} s of audio ({ours['patches']} patches) "
          f"toward {ours['target_name']!r}; {result['rounds']} alternating rounds x "
          f"{result['steps_per_round']} steps per side and kind; CPUs {result['cpus']}, busy "
          f"loop on CPU {result['busy_cpu']}")
    print(f"  ours: torch {ours['torch']}, {ours['threads']} threads ({ours['thread_source']}), "
          f"wait: {ours['wait_policy']}, freed memory kept: {ours.get('reuses_freed_memory')}, "
          f"native kernels: {ours.get('native_kernels', 'none in this code')}")
    for condition, sides in result.get("threads_per_step", {}).items():
        print(f"  {condition}: steps per thread count " + "; ".join(
            f"{name} " + ", ".join(f"{k} threads x{v}" for k, v in hist.items())
            for name, hist in sides.items()))
    if "baseline" in result["workers"]:
        base = result["workers"]["baseline"]
        print(f"  baseline: {base['code']}, {base['threads']} threads ({base['thread_source']}), "
              f"freed memory kept: {base.get('reuses_freed_memory')}")
    print(f"  tf: TensorFlow {tf['tensorflow']}, Keras {tf['keras']}, tf.function"
          f"{' (XLA)' if tf['jit_compile'] else ''}, TF_ENABLE_ONEDNN_OPTS={tf['onednn']}, "
          f"intra-op {tf['intra_op']}, inter-op "
          f"{tf['inter_op']}; golden parity worst: "
          + ", ".join(f"{k} {v:.2g}" for k, v in tf["parity"].items()))
    if "page_faults_per_step" in result:
        print("  minor page faults per step (median, max over requests): " + "; ".join(
            f"{name} {v['median']:g}, {v['max']}"
            for name, v in result["page_faults_per_step"].items()))
    print("  gradients agree: " + "; ".join(
        f"{kind} " + ", ".join(f"{k} cos {v:.6f}" for k, v in pairs.items())
        for kind, pairs in result["gradient_cosine"].items()))
    has_base = any("baseline" in r for r in result["summary"])
    header = (f"{'condition':<9} {'domain':<12} {'ours ms':>16} {'tf ms':>16} {'tf/ours':>8}"
              + (f" {'baseline ms':>16} {'base/ours':>9}" if has_base else ""))
    print()
    print(header)
    print("-" * len(header))

    def cell(side: dict[str, float]) -> str:
        return f"{side['median'] * 1e3:6.1f} [{side['p25'] * 1e3:4.0f}-{side['p75'] * 1e3:4.0f}]"

    for row in result["summary"]:
        line = (f"{row['condition']:<9} {row['kind']:<12} {cell(row['ours']):>16} "
                f"{cell(row['tf']):>16} {row['tf_over_ours']:>7.2f}x")
        if has_base:
            line += f" {cell(row['baseline']):>16} {row['baseline_over_ours']:>8.2f}x"
        print(line)
    print("\nmedian [25th-75th percentile] of the step times; tf/ours > 1 means ours is faster")
    print(f"load average before {result['load_before'][0]:.2f}, after "
          f"{result['load_after'][0]:.2f}")
    print(f"command: {result['command']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tf-python", default=DEFAULT_TF_PYTHON,
                        help="Python of the virtual environment that has TensorFlow")
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="yamnet.h5")
    parser.add_argument("--golden", default=str(DEFAULT_GOLDEN), help="yamnet_reference.npz")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8, help="steps per side, kind and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="our thread count (default: the CLI's policy)")
    parser.add_argument("--conditions", type=lambda s: s.split(","), default=["idle", "busy"],
                        help="idle,busy (comma-separated)")
    parser.add_argument("--busy-cpu", type=int, default=max(os.sched_getaffinity(0)),
                        help="the CPU the busy loop is pinned to")
    parser.add_argument("--baseline", metavar="REF",
                        help="also time our step on the code of this git commit")
    parser.add_argument("--tf-legacy-keras", action="store_true",
                        help="build the TensorFlow model with tf-keras (Keras 2), not Keras 3")
    parser.add_argument("--tf-jit", action="store_true", help="tf.function(jit_compile=True)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds for the 1-minute load to fall below 1")
    parser.add_argument("--json", action="store_true", help="print everything as JSON")
    parser.add_argument("--worker", choices=["torch", "tf"], help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--as-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--target", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "torch":
        torch_worker(args)
        return
    if args.worker == "tf":
        tf_worker(args)
        return
    if not Path(args.tf_python).is_file():
        raise SystemExit(f"no TensorFlow Python at {args.tf_python}; create it with: python3 -m "
                         "venv /work/tfvenv && /work/tfvenv/bin/pip install tensorflow-cpu h5py")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)


if __name__ == "__main__":
    main()
