"""Training speed and memory: one fold of each system on synthetic feature stores of 1k, 4k and
16k clips with Hume-like lengths (Whisper-tiny-sized audio frames at 50 Hz, face features at
6 Hz, sentence vectors), plus one fold on the demo store when it exists.

    python bench/bench_training.py [--sizes 1000 4000 16000] [--epochs 3] [--systems ...]
                                   [--devices cpu cuda cuda-host]
                                   (default: cpu, and cuda and cuda-host when present)

``cuda`` holds the clips on the GPU and gathers each batch there (``train.batches_on_device``);
``cuda-host`` assembles each batch on the host (4 loader processes, pinned memory), the path for
features larger than the GPU's memory: side by side, they measure what gathering on the GPU gains.

Each run is a fresh process (stores are written beforehand in their own), so its peak RSS is its
own. An epoch counts every pass over the training clips, MimicMetrics' unimodal pre-training
passes included; clips/s is training clips × epochs / seconds (validation passes included in
the seconds). The projection is the whole Hume-Vidmimic2 train+valid set (``FULL_CLIPS``) through
5-fold training (4/5 of the clips per fold) for ``PROJECTED_EPOCHS`` epochs at the measured rate.
Prints a table; writes bench/results/training.json.

    python bench/bench_training.py --floor [--clips 512] [--epochs 2] [--repeats 3] [--json]

``--floor`` times, per system and device (cpu; cuda when present), the trainer as the train
stage runs it (:class:`FoldTrainer`'s ``fit``: batch assembly, the steps, a validation per
epoch) beside a bare loop over the same model, loss and optimiser with every batch's tensors
built on the device beforehand (:func:`floor_fit`), alternately, ``--repeats`` times, in one
process on one synthetic store. It prints clips/s of both (medians) and the median of the
paired ratios; ``--json``: that list as JSON on stdout. Writes bench/results/training_floor.json
(``--out``) after every row.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
DIMS = {"audio": 384, "visual": 18, "text": 384}
FULL_CLIPS = 12_000  # Hume-Vidmimic2 train + valid (the test split is not trained on)
PROJECTED_EPOCHS = 30


def _one_run(args) -> None:
    """Child process: write (or reuse) the store, train one fold, print JSON."""
    import numpy as np

    from mimicflow.config import TrainParams, load_params
    from mimicflow.fusion.systems import SYSTEMS
    from mimicflow.training.data import FeatureDataset
    from mimicflow.training.folds import assign_folds
    from mimicflow.training.trainer import FoldTrainer

    if args.store == "demo":
        import pandas as pd

        params = load_params()
        folder = params.features.out
        manifest = pd.read_parquet(params.validate_.out / "manifest.parquet")
    else:
        from mimicflow.features.synthetic import write_synthetic_store

        folder = Path(args.store)
        manifest_file = folder / "manifest.parquet"
        if not manifest_file.exists():
            write_synthetic_store(folder, args.clips, DIMS, seed=0).to_parquet(manifest_file)
        import pandas as pd

        manifest = pd.read_parquet(manifest_file)
        if args.prepare:  # the store is written in its own process: not in the runs' peak RSS
            return
    device, _, assembly = args.device.partition("-")
    train = TrainParams(
        epochs=args.epochs,
        patience=args.epochs,
        device=device,
        batches_on_device=assembly != "host",
    )
    dataset = FeatureDataset(
        folder,
        manifest,
        {m: train.frames[m] for m in SYSTEMS[args.system].inputs({m: m for m in train.inputs})},
    )
    assignment = assign_folds(manifest, "merged", 5, 0)
    trainer = FoldTrainer(
        train,
        args.system,
        dataset,
        np.flatnonzero((assignment >= 0) & (assignment != 0)),
        np.flatnonzero(assignment == 0),
        0,
    )
    start = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - start
    epochs = len(result.history)
    clips_per_s = len(trainer.train_idx) * epochs / seconds
    print(
        json.dumps(
            {
                "seconds": seconds,
                "epochs": epochs,
                "seconds_per_epoch": seconds / epochs,
                "clips_per_s": clips_per_s,
                "projected_5fold_min": 5 * 0.8 * FULL_CLIPS * PROJECTED_EPOCHS / clips_per_s / 60,
                "val_mean_pearson": result.val_scores["mean_pearson"],
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def floor_params(device: str, epochs: int):
    """The bench's params: ``epochs`` of every stage (MimicMetrics' pre-training too), no early
    stopping, on ``device``."""
    from mimicflow.config import TrainParams

    return TrainParams(
        epochs=epochs,
        patience=epochs,
        device=device,
        mimicmetrics={"pretrain_epochs": epochs},
    )


def floor_fit(trainer, rng, batches: int | None = None) -> tuple[int, int, float]:
    """The trainer's model, loss and update (optimiser step, gradient clipping, EMA, schedule)
    over one epoch's batches built on the device beforehand, for as many epochs of each stage as
    ``trainer.fit`` runs; nothing else. Returns the clips of an epoch, the epochs and the seconds
    taken (the batches and the model built before the clock starts). ``batches``: only the
    first so many (a warm-up)."""
    import torch

    from mimicflow.fusion.models import branch_kind
    from mimicflow.training.trainer import DeviceBatches

    order, size = rng.permutation(trainer.train_idx), trainer.params.batch_size
    held = DeviceBatches(trainer.dataset, trainer.sampling[0], trainer.device)
    kinds = trainer.dataset.kinds().values()
    branches = {branch_kind(k) for k in kinds} if trainer.spec.extra_loss is not None else ()
    prebuilt = []
    for start in range(0, len(order) - 1, size)[:batches]:
        indices = order[start : start + size]
        means = {b: trainer.clip_mean(indices, b) for b in branches}
        prebuilt.append((indices, *held.batch(indices, rng), means))
    current = {}
    trainer.clip_mean = lambda indices, branch: current["means"][branch]  # prebuilt
    model = trainer.new_model()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    start, epochs = time.perf_counter(), 0
    if trainer.spec.pretraining is not None:
        for stage in trainer.spec.pretraining(model, trainer.hyper):
            _floor_stage(trainer, model, stage.epochs, stage.parameters, prebuilt, current)
            epochs += stage.epochs
    _floor_stage(trainer, model, trainer.params.epochs, None, prebuilt, current)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return sum(len(b[0]) for b in prebuilt), epochs + trainer.params.epochs, seconds


def _floor_stage(trainer, model, epochs: int, groups, prebuilt, current) -> None:
    """``epochs`` passes of forward, loss, backward and update over ``prebuilt``."""
    from mimicflow.training.trainer import _ema, autocast, clip_gradients

    optimiser, schedule = trainer.optimiser(model, epochs, groups)
    hyper = trainer.hyper
    ema = _ema(model, hyper.ema, hyper.ema_warmup) if hyper.ema else None
    model.train()
    for epoch in range(epochs):
        for indices, inputs, target, means in prebuilt:
            current["means"] = means
            with autocast(trainer.device, trainer.amp):
                loss = trainer._loss(model, model(inputs), indices, target, epoch)
            optimiser.zero_grad()
            loss.backward()
            clip_gradients(model, hyper)
            optimiser.step()
            if ema:
                ema.update_parameters(model)
            schedule.batch()


def _floor_pair(dataset, manifest, system: str, device: str, epochs: int, repeat: int):
    """(trainer clips/s, floor clips/s) of one repeat on fold 0 of 5, the floor first."""
    import numpy as np
    import torch

    from mimicflow.training.folds import assign_folds
    from mimicflow.training.trainer import FoldTrainer

    assignment = assign_folds(manifest, "merged", 5, 0)
    train_idx = np.flatnonzero((assignment >= 0) & (assignment != 0))
    val_idx = np.flatnonzero(assignment == 0)
    params = floor_params(device, epochs)

    def floor():
        trainer = FoldTrainer(params, system, dataset, train_idx, val_idx, repeat)
        return floor_fit(trainer, np.random.default_rng(repeat))

    def fit():
        trainer = FoldTrainer(params, system, dataset, train_idx, val_idx, repeat)
        start = time.perf_counter()
        result = trainer.fit()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        return result, time.perf_counter() - start

    if repeat % 2:  # alternate which goes first
        (result, trainer_s), (clips, epochs, floor_s) = fit(), floor()
    else:
        (clips, epochs, floor_s), (result, trainer_s) = floor(), fit()
    if len(result.history) != epochs:
        raise RuntimeError(f"{system}: the trainer ran {len(result.history)} epochs, not {epochs}")
    return clips * epochs / trainer_s, clips * epochs / floor_s


def floor_main(args) -> None:
    """Trainer and floor side by side per system and device (medians of ``args.repeats``)."""
    import statistics

    import numpy as np
    import torch

    from mimicflow.features.synthetic import write_synthetic_store
    from mimicflow.fusion.systems import SYSTEMS
    from mimicflow.training.data import FeatureDataset
    from mimicflow.training.trainer import FoldTrainer

    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        manifest = write_synthetic_store(Path(scratch), args.clips or 512, DIMS, seed=0)
        for system in args.systems:
            frames = floor_params("cpu", args.epochs).frames
            names = SYSTEMS[system].inputs({m: m for m in frames})
            dataset = FeatureDataset(scratch, manifest, {m: frames[m] for m in names})
            for device in devices:
                warm_up = FoldTrainer(floor_params(device, 1), system, dataset, [0, 1, 2], [3], 0)
                floor_fit(warm_up, np.random.default_rng(0), batches=1)  # and pools the clips
                pairs = [
                    _floor_pair(dataset, manifest, system, device, args.epochs, repeat)
                    for repeat in range(args.repeats)
                ]
                trainer, floor = (statistics.median(p[k] for p in pairs) for k in (0, 1))
                ratio = statistics.median(t / f for t, f in pairs)
                rows.append(
                    {
                        "system": system,
                        "device": device,
                        "trainer_clips_s": trainer,
                        "floor_clips_s": floor,
                        "ratio": ratio,
                    }
                )
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(rows, indent=2))  # a timeout keeps the rows so far
                print(
                    f"{system:>13} {device:>5}: trainer {trainer:8.0f} clips/s, floor "
                    f"{floor:8.0f} clips/s, ratio {ratio:.2f}",
                    file=sys.stderr if args.json else sys.stdout,
                    flush=True,
                )
    if args.json:
        print(json.dumps(rows))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument(
        "--systems",
        nargs="+",
        default=None,  # every registered system
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--devices", nargs="+")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("--store")
    parser.add_argument("--clips", type=int)
    parser.add_argument("--system")
    parser.add_argument("--floor", action="store_true", help="trainer against its floor")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="--floor: torch's CPU threads")
    parser.add_argument("--json", action="store_true", help="--floor: the rows as JSON")
    parser.add_argument("--out", type=Path, default=RESULTS / "training_floor.json")
    args = parser.parse_args()
    if args.systems is None:
        from mimicflow.fusion.systems import SYSTEMS

        args.systems = list(SYSTEMS)
    systems = args.systems
    if args.floor:
        floor_main(args)
        return
    if args.child:
        _one_run(args)
        return
    import torch

    devices = args.devices or ["cpu"] + (["cuda", "cuda-host"] if torch.cuda.is_available() else [])
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        runs = [("demo", 0)] if Path("data/features/audio/packed").exists() else []
        runs += [(str(Path(scratch) / f"store_{n}"), n) for n in args.sizes]
        for store, clips in runs:
            if store != "demo":
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        "--prepare",
                        "--store",
                        store,
                        "--clips",
                        str(clips),
                    ],
                    check=True,
                )
            for system in systems:
                for device in devices:
                    command = [
                        sys.executable,
                        __file__,
                        "--child",
                        "--store",
                        store,
                        "--clips",
                        str(clips),
                        "--system",
                        system,
                        "--epochs",
                        str(args.epochs),
                        "--device",
                        device,
                    ]
                    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                    row = {
                        "store": "demo" if store == "demo" else f"synthetic {clips}",
                        "system": system,
                        "device": device,
                    }
                    rows.append(row | json.loads(out.strip().splitlines()[-1]))
                    got = rows[-1]
                    print(
                        f"{row['store']:>16} {system:>13} {device:>9}: "
                        f"{got['seconds_per_epoch']:7.2f} s/epoch, {got['clips_per_s']:8.0f} "
                        f"clips/s, 5 folds × {PROJECTED_EPOCHS} epochs of {FULL_CLIPS} clips ≈ "
                        f"{got['projected_5fold_min']:6.1f} min, "
                        f"peak RSS {got['peak_rss_mb']:7.0f} MB",
                        flush=True,
                    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
