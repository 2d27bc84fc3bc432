#!/usr/bin/env bash
# Convert the AFHQ checkpoints of the CycleDiffusion paper's translation experiments into diffusers folders.
#   afhq_dog_4m.pt          ILVR's AFHQ-dog model (github.com/jychoi118/ilvr_adm)
#   afhq_cat_*.pt, afhq_wild_*.pt   the paper's AFHQ cat and wild models (github.com/ChenWu98/cycle-diffusion)
# All three share one architecture: 128 channels, 1 residual block per level, attention at 16x16 with 64 channels
# per head, up/down-sampling inside residual blocks, scale-shift norm, learned sigma, linear beta, 1000 steps.
set -euo pipefail
FLAGS="--attention_resolutions 16 --class_cond False --diffusion_steps 1000 --dropout 0.0 --image_size 256 \
--learn_sigma True --noise_schedule linear --num_channels 128 --num_head_channels 64 --num_res_blocks 1 \
--resblock_updown True --use_fp16 False --use_scale_shift_norm True"
cyclediff convert guided-diffusion "${DOG:-afhq_dog_4m.pt}" --flags "$FLAGS" --out afhq-dog
cyclediff convert guided-diffusion "${CAT:-afhq_cat.pt}" --flags "$FLAGS" --out afhq-cat
cyclediff convert guided-diffusion "${WILD:-afhq_wild.pt}" --flags "$FLAGS" --out afhq-wild
