"""``hayabusa train CONFIG.yaml`` and ``hayabusa test MODEL DATA…``.

``hayabusa train`` trains a potential as the YAML config says (see ``train.config``) and
writes DIR/model.pt, train.csv, checkpoint.pt, metrics.json, parity.png and config.yaml
(DIR defaults to runs/<config stem>). Launched by torchrun with several processes it trains
data-parallel (``torchrun --nproc_per_node N -m hayabusa train …``).
``hayabusa test`` evaluates a model file on labelled frames: metrics table, metrics.json and
parity.png.
"""

from __future__ import annotations

from pathlib import Path

from ..config import device_option
from ..errors import InputError


def run_train(args) -> int:
    from . import ddp
    from .config import load_train_config
    from .job import run_training

    cfg = load_train_config(args.config)
    if args.until_step is not None and args.until_step < 1:
        raise InputError(f"--until-step: must be >= 1, got {args.until_step}")
    device = ddp.local_device(device_option(args.device, cfg.device))
    out = Path(args.output) if args.output else Path("runs") / Path(args.config).stem
    dist = ddp.init_from_environment(device)
    try:
        run_training(cfg, args.config, out, device, overwrite=args.overwrite,
                     resume=args.resume, until_step=args.until_step, dist=dist)
    finally:
        if dist is not None:
            ddp.shutdown()
    return 0


def run_test(args) -> int:
    from .job import run_test as job

    model = Path(args.model)
    out = Path(args.output) if args.output else model.parent / "test"
    job(model, args.data, out, device_option(args.device), overwrite=args.overwrite,
        batch_atoms=args.batch_atoms)
    return 0


def add_parser(sub) -> None:
    train = sub.add_parser("train", help="train an ML potential from a YAML config",
                           description="Train an ML potential (DeepPot-SE) on labelled "
                                       "frames as a YAML config says.")
    train.add_argument("config", metavar="CONFIG.yaml", help="training configuration (YAML)")
    train.add_argument("--output", "-o", metavar="DIR",
                       help="output directory (default: runs/<config stem>)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the results of an earlier run in the output directory")
    train.add_argument("--resume", metavar="CHECKPOINT",
                       help="continue from a checkpoint of the same config and data")
    train.add_argument("--until-step", type=int, metavar="N",
                       help="stop at step N (the learning-rate schedule still spans "
                            "training.steps); continue later with --resume")
    train.add_argument("--device", help="override the config's device (auto, cpu, cuda, "
                                        "cuda:N)")
    train.set_defaults(func=run_train)

    test = sub.add_parser("test", help="metrics and parity plot of a model on labelled "
                                       "frames",
                          description="Evaluate a model file on labelled frames: metrics "
                                      "table, metrics.json and parity.png.")
    test.add_argument("model", metavar="MODEL", help="model file (hayabusa train's model.pt)")
    test.add_argument("data", metavar="DATA", nargs="+", help="ASE-readable labelled frames")
    test.add_argument("--output", "-o", metavar="DIR",
                      help="output directory (default: test/ beside the model file)")
    test.add_argument("--overwrite", action="store_true",
                      help="replace metrics.json and parity.png in the output directory")
    test.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    test.add_argument("--batch-atoms", type=int, default=1024, metavar="N",
                      help="atoms per evaluation batch")
    test.set_defaults(func=run_test)
