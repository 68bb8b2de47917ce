"""STanHop-Net multivariate forecasting (in 168 steps, out 24), Hopfield normalizer selectable.

Command (quick, ~1-2 min on a 2-core CPU; validation MSE on standardized values falls from ~1
to ~0.3-0.4 on the shipped EPF FR/BE electricity series):
    python scripts/train.py --config configs/stanhop.py:quick --workdir runs/stanhop_quick
The normalizer study (every normalizer, MSE/MAE, outliers, W8A8):
    python scripts/run.py --config configs/stanhop.py:quick --workdir runs/stanhop_study
Presets:
    quick          2 layers, d_model 32, 4 router patterns, 300 steps of batch 32, lr 1e-3.
    paper          ETTh1 settings (STanHop-Net paper): in 168, out 24, seg 6, d_model 256,
                   d_ff 512, 4 heads, 3 encoder layers, factor 10, dropout 0.2, lr 1e-4,
                   batch 128; point data.path at ETTh1.csv (else the shipped EPF series).
    paper_outlier  paper with 11 encoder layers (the OutEffHop outlier study).
Pick the normalizer with --config.model.normalizer=softmax|softmax1|clipped|gsh.
"""

from outeffhop import data
from outeffhop.launch.configs import parse_arg
from outeffhop.models import stanhop
from outeffhop.train import base_config

PRESETS = ("quick", "paper", "paper_outlier")


def get_config(arg: str | None = None):
    a = parse_arg(arg, presets=PRESETS, default="quick")
    preset = a.preset
    c = base_config()
    c.task = "stanhop"  # outeffhop.train.tasks.stanhop
    c.experiment = "outeffhop.experiments.stanhop.study"  # run by scripts/run.py
    c.preset = preset  # name of this preset, recorded in reports
    c.model = stanhop.get_config("paper")  # paper sizes; quick shrinks them below
    c.model.num_series = 0  # 0 = the data's number of variables
    c.data = data.get_data_config("timeseries")  # shipped EPF FR/BE unless data.path is set
    c.data.seq_len, c.data.pred_len = 168, 24  # must equal model.in_len, model.out_len
    c.study = dict(  # outeffhop.experiments.stanhop.study
        normalizers=("softmax", "softmax1", "clipped", "gsh"),  # variants trained and compared
        eval_batch_size=128,  # rows per test batch
        test_batches=0,  # test batches for MSE/MAE/W8A8; 0 = the whole test split
        outlier_batches=4,  # test batches for kurtosis / inf-norm
        calib_batches=8,  # validation batches that calibrate the W8A8 activation ranges
    )
    if preset == "quick":
        c.model.update(d_model=32, d_ff=64, num_heads=2, num_layers=2, factor=4, dropout=0.0)
        c.batch_size, c.num_steps = 32, 300  # global batch, optimizer steps
        c.optim.lr, c.optim.warmup_steps = 1e-3, 30  # peak lr, linear warmup
        c.optim.schedule = "cosine"  # decay to end_lr_ratio * lr
        c.log_every, c.eval_every, c.checkpoint_every = 50, 0, 0  # eval/save at the end only
        c.eval_steps = 8  # validation batches per eval
        c.study.test_batches = 8  # the quick study scores 8 x 128 test windows
    else:
        c.model.num_layers = 11 if preset == "paper_outlier" else 3  # encoder blocks
        c.batch_size, c.num_steps = 128, 6000  # ~ 70 epochs of ETTh1's 8.4k train windows
        c.optim.lr, c.optim.warmup_steps = 1e-4, 0  # Crossformer/STanHop ETTh1 recipe
        c.optim.schedule = "constant"  # constant lr after warmup
        c.optim.weight_decay = 0.0  # Adam without decay, as the reference code
        c.log_every, c.eval_every, c.checkpoint_every = 50, 500, 500
        c.eval_steps = 16  # validation batches per eval
    c.data.batch_size = c.batch_size  # the pipeline reads it; the trainer overrides it anyway
    return a.apply(c)
