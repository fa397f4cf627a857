"""A data-dependent compression bound: a prior centre trained on the first points (on randomly shifted images),
a quantized subspace around it, and the bound on the points it never saw -- then ``genlab verify``.

Run from this folder:  python data_dependent_bound.py [OUT_DIR]

What is charged and what is free: the message (the quantized subspace coordinates) and the declared grid of
choices are charged. The prior centre and the input statistics, both computed on the first ``prior_split``
points only, are part of the prior and cost nothing (``preprocessing.bits`` is 0). Augmenting the prior's
training with shifts is free too, because the bound counts errors on the original points after the split.
"""

import subprocess
import sys
from pathlib import Path

from genlab.bounds.compression import DEFAULT_GRID, BoundConfig, compression_bound

if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bounds/digits-dd")
    settings = BoundConfig(dataset="digits", model="cnn", intrinsic_dim=50, epochs=6, lr=0.01, batch_size=64,
                           quant_levels=3, qat_epochs=2, qat_lr=0.003, prior_split=900, prior_epochs=20,
                           prior_lr=0.003, augment_shift=1,
                           grid={**DEFAULT_GRID, "prior_split": [None, 900], "augment_shift": [0, 1]})
    cert = compression_bound(settings, out, quiet=True)
    print(f"prior on the first {cert['prior']['split']} points; bound on the other {cert['n']}: "
          f"{100 * cert['bound']:.2f}% (train error {100 * cert['train_error']:.2f}%, test error "
          f"{100 * cert['test_error']:.2f}%)")
    print(f"charged: {cert['message_bits']} message bits + {cert['grid_bits']:.1f} grid bits + "
          f"{cert['preprocessing']['bits']} for the normalisation ({cert['preprocessing']['normalisation']})")
    # from a fresh process, as anyone holding the two files would
    done = subprocess.run([sys.executable, "-m", "genlab", "verify", str(out)], capture_output=True, text=True)
    print(done.stdout.strip().splitlines()[-1] if done.returncode == 0 else done.stderr.strip())
    sys.exit(done.returncode)
