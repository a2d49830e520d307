"""Fine-tune a trained run with quantization-aware training, then export it exactly.

A stop-gap until the trainer offers `sast-deploy train --qat` and a fine-tune entry: a plain Adam
loop (no SAM) on the run's dataset, with the model on its Loihi fixed-point grid
(sast_deploy/model/qat.py). Writes a run directory whose model carries its grids (meta "qat"):

    python examples/qat_finetune.py --run runs/mlp --epochs 2 --out runs/mlp-qat
    sast-deploy export --run runs/mlp-qat --target lava --qat-run --out runs/mlp-qat/net.lava.h5
"""
import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from sast_deploy.data.frames import load_frames
from sast_deploy.evaluation.accuracy import transfer_gap
from sast_deploy.jsonio import write_json
from sast_deploy.model import load_model, save_model
from sast_deploy.model.qat import enable_qat, qat_grids


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run directory to start from")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    model, meta = load_model(Path(args.run) / "model.safetensors")
    data = meta["data"]
    split = {s: load_frames(data["dataset"], s, data["T"], args.data_dir, data["input_norm"], data.get("downsample"))
             for s in ("train", "test")}
    enable_qat(model, data["input_norm"])
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(split["train"]), generator=gen).numpy()
        for start in range(0, len(order), args.batch_size):
            idx = order[start:start + args.batch_size]
            loss = F.cross_entropy(model(torch.from_numpy(split["train"].frames(idx))),
                                   torch.from_numpy(split["train"].labels[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            model.project_()
        print(f"epoch {epoch + 1}: last loss {loss.item():.4f}")
    model.eval()
    summary = {**transfer_gap(model, split["test"]), "dataset": data["dataset"], "split": "test",
               "epochs": args.epochs, "seed": args.seed, "rho": 0.0, "qat": True, "source_run": args.run}
    out = Path(args.out)
    save_model(out / "model.safetensors", model, {**meta, "qat": qat_grids(model), "summary": summary})
    write_json(out / "summary.json", summary)
    write_json(out / "config.json", {"qat_finetune": vars(args)})
    print(f"{out}: surrogate {summary['surrogate_acc']:.3f}  hard {summary['hard_acc']:.3f} (on the fixed-point grid)")


if __name__ == "__main__":
    main()
