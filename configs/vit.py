"""ViT image classification (pre-LN, CLS token) with the study's attention variants.

Command (quick: 33 s measured on a shared 2-core CPU; scikit-learn digits, eval accuracy
0.43 at step 300 against 0.10 chance, eval loss 1.74 from log(10) = 2.30):
    python scripts/train.py --config configs/vit.py:quick --workdir runs/vit_quick
Presets:
    quick  vit-tiny (2L/32/4H, patch 2 on 8x8x1 digits), 300 steps of batch 32.
    cpu    4L/128/4H/512 on digits placed at random on a 32x32 noisy canvas (data set
           canvas_digits, patch 4: 64 patches + CLS), 4000 steps of batch 32, lr 2e-3
           constant, no weight decay (the study's ViT row, configs/reproduce.py:cpu).
    paper  ViT-S/16 (12L/384/6H) on ImageNet-1k from a local folder with train/ and val/
           class-folder trees (pass --config.data.path=/path/to/imagenet), 224x224, batch
           1024, 300 epochs, AdamW lr 1e-3 cosine, warmup 5 epochs, wd 0.05, clip 1.0, DeiT
           augmentation (random-resized crop, flip, RandAugment m9, mixup 0.8, CutMix 1.0,
           label smoothing 0.1; the DeiT-S recipe that Bondarenko et al. follow [check]),
           JPEGs decoded by 16 grain worker processes per host; bf16 compute with fp32
           params and Adam state, FSDP; TPU pod / multi-GPU scale.
Pick the attention variant with e.g. --config.model.attention.normalizer=softmax1.
"""

from outeffhop import data, models
from outeffhop.launch.configs import parse_arg
from outeffhop.train import base_config


def get_config(arg: str = "quick"):
    a = parse_arg(arg, presets=("quick", "cpu", "paper"), default="quick")
    arg = a.preset
    c = base_config()
    c.task = "vit"
    if arg == "quick":
        c.data = data.get_data_config("digits")  # 8x8 grayscale digits, 10 classes
        c.model = models.get_config("vit-tiny")  # 8x8x1 images, patch 2
        c.batch_size, c.num_steps = 32, 300
        c.optim.lr, c.optim.warmup_steps = 1e-3, 30
        c.optim.schedule = "cosine"  # warmup then cosine decay
        c.log_every, c.eval_every, c.checkpoint_every = 10, 100, 100
        c.eval_steps = 6  # ~all 180 held-out digits
    elif arg == "cpu":
        c.data = data.get_data_config("digits")
        c.data.name = "canvas_digits"  # outeffhop.data.synthetic_images: digit on a noisy canvas
        c.data.image_size = 32  # canvas side: 8 x 8 patches of 4 pixels
        c.data.digit_size = 16  # the 8x8 digit upsampled 2x, placed at random
        c.data.noise = 0.1  # background N(0, 0.1^2) clipped to [0, 1]
        c.model = models.get_config(
            "vit-tiny", num_layers=4, d_model=128, num_heads=4, d_ff=512, image_size=32
        )
        c.model.patch_size = 4  # 64 patches + CLS = 65 tokens
        c.batch_size, c.num_steps = 32, 4000  # 2080 tokens per step, as OPT's 16 x 128
        c.optim.lr, c.optim.warmup_steps = 2e-3, 200
        c.optim.schedule = "constant"
        c.optim.weight_decay = 0.0
        c.log_every, c.eval_every, c.checkpoint_every = 50, 500, 500
        c.eval_steps = 6  # the 180 held-out digits (one canvas each)
    else:
        c.data = data.get_data_config("image_folder")
        c.data.path = ""  # set to the ImageNet folder (train/ and val/ of class subfolders)
        c.data.image_size, c.data.channels = 224, 3
        c.data.augment = False  # DeiT's augmentation below replaces the random shift
        c.data.random_resized_crop, c.data.hflip = True, True  # scale (0.08, 1), ratio 3/4-4/3
        c.data.randaugment_n, c.data.randaugment_m = 2, 9.0  # rand-m9-mstd0.5
        c.data.mixup_alpha, c.data.cutmix_alpha = 0.8, 1.0  # one of them per pair, p = 1/2
        c.data.label_smoothing = 0.1
        c.data.eval_crop_frac = 0.875  # eval: resize to 256, centre crop 224
        c.data.num_workers = 16  # JPEG-decoding processes per host
        c.model = models.get_config("vit-s/16")  # 12L/384/6H, patch 16, 1000 classes
        c.model.dtype = "bfloat16"  # compute; params (and so Adam's moments) stay float32
        c.batch_size, c.num_steps = 1024, 375_000  # ~300 epochs of 1.28M images
        c.optim.lr, c.optim.warmup_steps = 1e-3, 6_250  # ~5 epochs
        c.optim.schedule = "cosine"
        c.optim.weight_decay = 0.05
        c.log_every, c.eval_every, c.checkpoint_every = 100, 6_250, 5_000
        c.eval_steps = 50
        c.parallelism = "fsdp"
        c.rng_impl = "rbg"  # fast dropout bits on TPU/GPU (layout-dependent, still seeded)
    c.optim.clip_norm = 1.0  # global-norm clipping
    c.data.batch_size = c.batch_size  # the pipeline reads it; the trainer overrides it anyway
    return a.apply(c)
