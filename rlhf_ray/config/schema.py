"""The typed configuration. Every field has a documented default; CHOICE marks a default from ALGORITHMS.md §6."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    # Unknown keys are errors (a typo must never silently fall back to a default).
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(Section):
    name: str = Field("run", description="Run folder name: outputs go to <output_dir>/<name>/.")
    output_dir: str = Field("runs", description="Parent folder of run folders.")
    seed: int = Field(0, description="Seed for torch, numpy and Python RNGs and data shuffling.")
    log_every: int = Field(1, ge=1, description="Write metrics every N optimizer steps.")
    checkpoint_every: int = Field(
        5, ge=0, description="PPO: write a checkpoint every N iterations and after the last (0: only after the last)."
    )
    keep_checkpoints: int = Field(2, ge=1, description="Keep the newest N checkpoints; older ones are deleted.")
    save_samples: bool = Field(True, description="PPO: append every rollout (prompt index, response, score) to samples.jsonl.")
    wandb: Literal["off", "online", "offline"] = Field(
        "off", description="Also log metrics and the config to Weights & Biases (pip install 'rlhf-ray[wandb]'): "
        "online, or offline (written under <run>/wandb, no network; `wandb sync` uploads it)."
    )
    wandb_project: str = Field("rlhf_ray", description="The wandb project.")
    wandb_entity: str | None = Field(None, description="The wandb entity (team or user; None: your default).")


class FieldMap(Section):
    """Which keys of a user's JSON/JSONL rows hold the prompt and the two responses."""

    prompt: str = Field("prompt", description="Key of the prompt text.")
    chosen: str = Field("chosen", description="Key of the preferred response.")
    rejected: str = Field("rejected", description="Key of the dispreferred response.")
    group: str | None = Field(None, description="Key whose value groups rows for the train/eval split (None: the prompt).")


class DataConfig(Section):
    source: Literal["hh_rlhf", "tldr", "files", "jsonl"] = Field(
        "hh_rlhf", description="hh_rlhf | tldr (OpenAI summarize-from-feedback comparisons) | files (your own rows: "
        "JSON, JSONL, parquet or arrow files, `datasets` save_to_disk folders; jsonl is its earlier name)."
    )
    paths: list[str] = Field(
        default_factory=list, description="Data files; empty means the data shipped with rlhf_ray for this source."
    )
    fields: FieldMap = Field(default_factory=FieldMap, description="Field mapping for source=files.")
    row_format: Literal["auto", "strings", "conversational", "sharegpt"] = Field(
        "auto", description="Rows of source=files: strings (prompt/chosen/rejected text), conversational (TRL: "
        "chosen/rejected as lists of {role, content} messages, the prompt explicit or implicit), sharegpt "
        "(`conversations` of {from, value}, chosen/rejected message objects); auto: detected per row."
    )
    dataset_split: str | None = Field(
        None, description="The split to read from a save_to_disk folder that holds several (None: its only split)."
    )
    prompt_paths: list[str] = Field(
        default_factory=list, description="Prompt-only files for RL (rows with a prompt, as text or messages, or a "
        "ShareGPT conversation ending with the user's turn; any file type of source=files): PPO takes its prompts "
        "from them instead of the preference set's, with no gold answer (a reward that needs none). RM data is unaffected."
    )
    on_bad_row: Literal["skip", "error"] = Field(
        "skip", description="skip: drop malformed rows and count them in the report; error: stop at the first, naming file and line."
    )
    hh_multi_turn: Literal["keep", "skip"] = Field(
        "keep",
        description="HH rows whose chosen/rejected diverge before the last Assistant turn (5 in harmless test): "
        "keep them split at the last shared Assistant marker, or skip them. Counted either way.",
    )
    empty_response: Literal["keep", "skip"] = Field(
        "keep", description="Pairs with an empty chosen or rejected response (a real judgement in HH-RLHF): keep or skip; counted either way."
    )
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share of groups (prompts; TL;DR posts) held out.")
    split_seed: int = Field(0, description="Seed of the train/eval split (a hash of the group key), independent of run.seed.")
    max_pairs: int | None = Field(None, ge=1, description="Use at most this many train pairs (None: all).")
    max_eval_pairs: int | None = Field(None, ge=1, description="Use at most this many eval pairs (None: all).")
    relabel_with: str | None = Field(
        None, description="Gold labels (a `rlhf-ray gold build` run folder or its gold_labels.jsonl): every pair is "
        "ordered by the gold RM's scores (a synthetic gold world); pairs it did not score are dropped and counted."
    )
    chat_template: bool = Field(True, description="Render prompts with the tokenizer's chat template when it has one.")
    augment_pairs: list[str] = Field(
        default_factory=list, description="Extra RM train pairs: JSONL rows with prompt, chosen, rejected and format "
        "(plain | hh_dialogue), as `rlhf-ray seam augment` writes them. Added to the train split after max_pairs, never "
        "to eval, never relabeled; bad rows counted per file like any data file's."
    )
    rl_prompts: str | None = Field(
        None, description="A prompt list (JSONL rows with a prompt field, e.g. `rlhf-ray seam filter`'s output): PPO "
        "uses only the train prompts it names (None: every train prompt). RM data is unaffected."
    )


class ModelConfig(Section):
    policy: str = Field("smollm2-135m-instruct", description="Policy (SFT) model: an asset name or an HF directory.")
    reward: str | None = Field(None, description="Reward model HF directory; None: a fresh scalar head on the policy backbone.")
    mixed_precision: Literal["auto", "bf16", "none"] = Field(
        "auto", description="Forward passes of the learners and reward actors under bf16 autocast over float32 weights "
        "and AdamW states (bf16), or in fp32 (none). auto: bf16 where the node computes it natively (CPU flag avx512_bf16 "
        "or amx_bf16, a CUDA GPU with bf16), fp32 elsewhere: emulated bf16 is several times slower than fp32. Each actor "
        "decides for its own node (rlhf_ray/device.py)."
    )
    max_len: int = Field(512, ge=8, description="Max tokens of prompt + response (MOSS uses 2048).")
    max_response_len: int = Field(128, ge=1, description="Max response tokens; the prompt is cut from the left to fit.")
    on_overlong: Literal["truncate", "skip"] = Field(
        "truncate", description="Sequences longer than max_len: truncate (counted) or skip the pair (counted)."
    )


class ContrastiveSection(Section):
    """L_total = L_rm + beta * L_cl over two dropout views (P2 §3.1). Unset fields take the preset's value (ALGORITHMS.md §1.3)."""

    method: Literal["none", "simcse", "swav", "swav_diff"] = Field(
        "none", description="none | simcse (beta 1) | swav (50 prototypes, beta 0.1) | swav_diff (on differences, 20 prototypes, beta 0.5)."
    )
    mode: Literal["response", "difference"] | None = Field(
        None, description="Contrast single responses or chosen-minus-rejected differences (None: the preset's; simcse: response)."
    )
    beta: float | None = Field(None, ge=0, description="Weight of L_cl (None: the preset's).")
    temperature: float | None = Field(None, gt=0, description="tau (None: SimCSE 0.05, SwAV 0.1; CHOICE).")
    n_prototypes: int | None = Field(None, ge=2, description="SwAV prototypes K (None: the preset's).")
    dropout: float | None = Field(None, ge=0, lt=1, description="Dropout of the two views on every decoder layer's output (None: 0.05).")
    sinkhorn_epsilon: float | None = Field(None, gt=0, description="SwAV Sinkhorn epsilon (None: 0.05).")
    sinkhorn_iters: int | None = Field(None, ge=1, description="SwAV Sinkhorn iterations (None: 3).")


class RMConfig(Section):
    """Bradley-Terry reward-model training; defaults from MOSS config_rm.py / Secrets of RLHF II App. B.2."""

    lr: float = Field(5e-6, gt=0, description="AdamW learning rate (P2 App. B.2).")
    batch_size: int = Field(32, ge=1, description="Pairs per optimizer step (P2: global batch 32).")
    micro_batch_size: int = Field(8, ge=1, description="Pairs per forward pass; gradients accumulate to batch_size.")
    epochs: int = Field(1, ge=1, description="Passes over the train pairs (P2: 1).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (None: epochs decide).")
    lr_schedule: Literal["constant_with_warmup", "linear", "cosine"] = Field(
        "linear", description="LR after warmup: constant, or linear/cosine decay to 0 at the last step."
    )
    warmup_steps: int = Field(100, ge=0, description="Linear warmup steps (MOSS train_rm.sh: 100).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (MOSS: 0).")
    adam_betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas (MOSS).")
    adam_eps: float = Field(1e-6, gt=0, description="AdamW eps (MOSS).")
    grad_clip: float | None = Field(1.0, gt=0, description="Max gradient norm (None: no clipping).")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Uniform BT label smoothing alpha (0: vanilla loss).")
    eval_every: int = Field(50, ge=1, description="Evaluate on the held-out split every N optimizer steps (and at the end).")
    eval_at_start: bool = Field(True, description="Also evaluate before the first step (the untrained baseline of the eval curve).")
    save_dir: str | None = Field(None, description="Where the trained RM is saved (None: <run folder>/reward_model).")
    save_every: int | None = Field(
        None, ge=1, description="Also save an HF checkpoint to <run>/checkpoints/step-N every N steps (None: only the final model)."
    )
    # Denoising by ensemble preference strength (P2 §2.4-2.5; ALGORITHMS.md §1.2). Each switch is independent.
    strength_file: str | None = Field(
        None, description="Annotated JSONL written by `rlhf-ray rm strength` (pairs matched by prompt+chosen+rejected); "
        "needed by flip, soft_label and adaptive_margin, and enables the confident-subset eval."
    )
    flip: bool = Field(False, description="Swap chosen and rejected for the flip_fraction train pairs of lowest strength mean.")
    flip_fraction: float = Field(0.2, ge=0, le=1, description="Share of train pairs flipped (CHOICE: P2 main text 0.2; 0.1 is its ablation).")
    soft_label: bool = Field(False, description="Label smoothing soft_label_alpha on pairs whose strength mean is < 0 (after a flip).")
    soft_label_alpha: float = Field(0.1, ge=0, lt=0.5, description="Smoothing of soft_label (CHOICE: no value in P2; sweep 0.1-0.3).")
    adaptive_margin: bool = Field(False, description="Margin m_i = margin_scale * strength mean inside the log-sigmoid (P2 Eq. 6, parenthesis fixed).")
    margin_scale: float = Field(1.0, description="lambda_m of the adaptive margin (CHOICE: 1).")
    contrastive: ContrastiveSection = Field(default_factory=ContrastiveSection, description="Contrastive RM term (P2 §3.1).")


class SFTConfig(Section):
    """`rlhf-ray sft`: supervised fine-tuning of model.policy on the gold (first chosen) response of every train prompt
    of the configured preference set, token-mean cross-entropy on the response tokens only."""

    lr: float = Field(1e-5, gt=0, description="AdamW learning rate.")
    batch_size: int = Field(16, ge=1, description="Examples per optimizer step.")
    micro_batch_size: int = Field(4, ge=1, description="Examples per forward pass; gradients accumulate to batch_size.")
    epochs: int = Field(1, ge=1, description="Passes over the train prompts.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (None: epochs decide).")
    lr_schedule: Literal["constant_with_warmup", "linear", "cosine"] = Field(
        "cosine", description="LR after warmup: constant, or linear/cosine decay to 0 at the last step."
    )
    warmup_steps: int = Field(0, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    grad_clip: float | None = Field(1.0, gt=0, description="Max gradient norm (None: no clipping).")
    eval_every: int = Field(50, ge=1, description="Held-out loss every N steps (and before the first and after the last).")
    save_every: int | None = Field(
        None, ge=1, description="An HF checkpoint at <run>/checkpoints/step-N every N steps, all kept (the policy ladder "
        "of the SEAM saturation study); None: only the final <run>/policy."
    )


class StrengthConfig(Section):
    """`rlhf-ray rm strength`: an RM ensemble's preference strength and the P2 §2.2-2.3 analysis."""

    members: int = Field(10, ge=2, description="Ensemble size M (P2: 10); member m shuffles the data with seed run.seed + m.")
    max_concurrent: int | None = Field(
        None, ge=1, description="Train at most this many RMs at once, each on learner.resources (None: all members at once)."
    )
    std_groups: int = Field(20, ge=1, description="Groups (sorted by strength mean) of the std analysis (P2 Fig. 2: 20).")
    retrain_groups: int = Field(10, ge=0, description="Groups of the per-group retraining, one fresh RM per group (P2 Fig. 4: 10; 0: skip).")
    output: str | None = Field(None, description="Annotated JSONL path (None: <run folder>/strength.jsonl).")


class MetaRMConfig(Section):
    """The MetaRM step (ALGORITHMS.md §2.2; paper values from MRM Implementation Details). alpha is rm.lr."""

    variant: Literal["restored", "alternating"] = Field(
        "restored", description="CHOICE (§6.7): restored = Adam ascent theta' = theta + Delta with its own optimizer state, "
        "BT gradient at theta', theta restored, main AdamW steps theta; alternating = no restore (main AdamW steps theta')."
    )
    meta_lr: float = Field(5e-6, gt=0, description="eta, the ascent step on J (MRM: 5e-6, like alpha).")
    k: int = Field(5, ge=2, description="Policy responses sampled per meta prompt (MRM: 5).")
    meta_batch_prompts: int = Field(16, ge=1, description="Meta prompts per RM step: 16 x k sequences (CHOICE §2.2: 16 prompts).")
    micro_prompts: int = Field(1, ge=1, description="Meta prompts per forward (k sequences each); gradients accumulate.")
    adam_betas: tuple[float, float] | None = Field(None, description="Betas of the ascent's Adam (None: rm.adam_betas).")
    adam_eps: float | None = Field(None, gt=0, description="Eps of the ascent's Adam (None: rm.adam_eps).")


class EvalConfig(Section):
    """`rlhf-ray eval`: two policies on the same held-out prompts, judged by a reward model (ALGORITHMS.md §6.8)."""

    judge: str | None = Field(None, description="The judging RM (HF folder): the gold RM of a synthetic gold world; "
                              "`--judge` sets it (None: <data.relabel_with>/reward_model when that is a gold run folder).")
    prompts: int = Field(100, ge=1, description="Held-out prompts (data eval split, in order) each policy answers (MRM: 100).")
    tie_margin: float = Field(0.0, ge=0, description="|score gap| at or below this is a tie (CHOICE: 0, equal scores only).")
    bootstrap: int = Field(2000, ge=100, description="Bootstrap resamples of the prompts for the intervals.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Interval coverage.")


class OnlineConfig(Section):
    """Online iterative RLHF (ALGORITHMS.md §2.3): rounds of [sample the policy, update the RM, push it, PPO].

    Round 1 is PPO with the RM as given or trained first; each later round starts by sampling a meta set (prompts x
    metarm.k responses) from the current policy and updating the RM by rm_update, then runs ppo.iterations PPO
    iterations that continue the policy. rounds: 1 is a plain PPO run."""

    rounds: int = Field(1, ge=1, description="Rounds of ppo.iterations PPO iterations each (1: plain PPO, no RM update).")
    rm_update: Literal["metarm", "vanilla", "labeled", "frozen"] = Field(
        "metarm", description="How the RM follows the policy at the start of rounds 2..R: metarm (MetaRM steps on the "
        "meta set, ALGORITHMS.md §2.2) | vanilla (the same pairs and steps without the meta term: the control) | "
        "labeled (the oracle orders two of each meta prompt's responses; these pairs join the RM's data) | frozen."
    )
    rm_init: Literal["continue", "sft"] = Field(
        "continue", description="CHOICE (§6.7): continue the RM (and its optimizer) from the previous round, or put a "
        "fresh head on the initial policy each round (sft)."
    )
    critic_init: Literal["rm", "keep"] = Field(
        "rm", description="CHOICE (§2.3): after an RM update re-initialise the critic from the new RM (fresh optimizer "
        "state), or keep training the critic it has."
    )
    rm_steps: int | None = Field(
        None, ge=1, description="RM optimizer steps per round (None: one epoch of the RM's train pairs, MRM's 1 epoch)."
    )
    meta_prompts: int | None = Field(
        None, ge=1, description="Prompts in a round's meta set, each with metarm.k policy responses (None: rm_steps x "
        "metarm.meta_batch_prompts, every meta prompt used once; capped at the number of RL prompts)."
    )
    rm_learner: Literal["auto", "resident", "released"] = Field(
        "auto", description="Where the RM learner is between RM updates: resident (its actors stay up through the "
        "round's PPO) | released (its state is saved under the run folder and its actors stop; the next update rebuilds "
        "them from it) | auto: resident when the learner asks for GPUs (its memory is its own), released on CPU, where "
        "every role shares the host's memory and an idle RM learner holds a whole training state."
    )
    gold: str | None = Field(
        None, description="Gold RM folder: the labeled rounds' oracle, and the judge of the gold diagnostics (gold "
        "reward per iteration, proxy-gold agreement per round). None: <data.relabel_with>/reward_model when "
        "relabel_with names a `rlhf-ray gold build` run folder; else no gold diagnostics."
    )


class SeamGridConfig(Section):
    """`rlhf-ray seam grid`, SEAM's saturation study: every (policy, RM) cell a short RLHF run (ppo section) as a Ray
    Tune trial, judged by the gold RM against one reference policy, beside the cell's SEAM at its first iteration."""

    policies: list[str] = Field(default_factory=list, description="Policy rungs: model folders or assets; an `rlhf-ray "
                                "sft` run folder gives its checkpoints (step-*) in order.")
    rms: list[str] = Field(default_factory=list, description="RM rungs: RM folders; an `rlhf-ray rm train` run folder "
                           "gives its checkpoints (step-*) and its final reward_model in order.")
    against: str | None = Field(None, description="The reference every cell's final policy is judged against (None: "
                                "model.policy), so that cells compare with each other.")
    max_concurrent: int = Field(1, ge=1, description="Cells running at once; each cell's actors hold their own "
                                "placement groups, so the cluster must hold that many cells' actors together (a cell "
                                "left unplaced past the placement timeout fails; a rerun resumes it).")


class SeamConfig(Section):
    """SEAM (ALGORITHMS.md §3, §6.1-6.6): per prompt, K worse answers beside the gold one; the policy's log-probs and
    the RM's rewards over [gold, worse] give seam_score in [0, 1], higher = policy and RM agree with the gold order."""

    variant: Literal["contrast", "gpt", "adv"] = Field(
        "gpt", description="Worse answers: contrast (gold answers of the nearest other prompts) | gpt (a degrader LLM "
        "asked for lower-quality answers) | adv (seeded perturbations of the gold answer). CHOICE §3.3: gpt."
    )
    k: int = Field(30, ge=1, description="Worse answers per prompt (SEAM: 30; smaller in CPU configs).")
    seed: int = Field(0, description="Seed of the worse answers, apart from run.seed so runs can share the cache.")
    estimator: Literal["mass", "count", "disagree"] = Field(
        "mass", description="CHOICE §3.2: mass (the policy's relative mass on misjudged worse answers) | count "
        "(share misjudged) | disagree (share where policy and RM order gold and worse answer differently)."
    )
    length_penalty: Literal["mean", "sum"] = Field(
        "mean", description="CHOICE §6.2: the policy's per-token mean log-prob (the length penalty), or the raw sum."
    )
    max_answer_tokens: int = Field(128, ge=1, description="Answers are cut to this many tokens before scoring (SEAM: 128).")
    filter: Literal["none", "seam", "random"] = Field(
        "none", description="Which prompts to drop: none | seam (the lowest-SEAM drop_fraction) | random (as many, "
        "drawn at random: the control)."
    )
    drop_fraction: float = Field(0.2, ge=0, lt=1, description="Share of scored prompts dropped (CHOICE §3.3: 20 %).")
    adv_fraction: float = Field(0.3, gt=0, le=1, description="adv: share of words edited (SEAM: 30 %).")
    augment: Literal["seam", "random"] = Field(
        "seam", description="`seam augment`'s pairs: seam (gold > each misjudged worse answer of the lowest-SEAM "
        "augment_fraction of prompts, CHOICE §6.1) | random (as many gold > worse pairs drawn at random: the control)."
    )
    augment_fraction: float = Field(0.2, gt=0, le=1, description="Share of scored prompts `seam augment` takes "
                                    "its hard negatives from (CHOICE: 20 %, as drop_fraction).")
    contrast_max_cosine: float = Field(0.9, description="contrast: neighbours at or above this cosine are skipped (SEAM: 0.9).")
    encoder: str = Field("all-minilm-l6-v2", description="contrast: the sentence encoder (an asset name or HF folder).")
    degrader: str | None = Field(None, description="gpt: the degrader model, an asset name or HF folder (None: model.policy).")
    degrader_endpoint: str | None = Field(
        None, description="gpt: an OpenAI-compatible base URL (http://host:port/v1) to degrade with instead of a "
        "local model; degrader then names the endpoint's model."
    )
    degrader_max_tokens: int = Field(128, ge=1, description="gpt: max tokens of a worse answer.")
    degrader_temperature: float = Field(1.0, gt=0, description="gpt: sampling temperature (SEAM: 1).")
    cache: str | None = Field(None, description="Worse-answer cache folder (None: <asset cache>/seam).")
    grid: SeamGridConfig = Field(default_factory=SeamGridConfig, description="The saturation study (`seam grid`).")
    scorers: int = Field(1, ge=1, description="Offline scoring: actors in each pool (policy, RM, degrader) of the Ray Data pipeline.")
    batch_prompts: int = Field(16, ge=1, description="Offline scoring: prompts per map_batches call.")


class PPOConfig(Section):
    """PPO constants; defaults from MOSS train_ppo_en.sh and TRL (ALGORITHMS.md §1.4, §4)."""

    advantage_estimator: Literal["gae", "grpo", "rloo", "reinforce_pp"] = Field(
        "gae", description="Advantage estimator, by its name in rlhf_ray.algorithms.ADVANTAGE_ESTIMATORS: gae (with a "
        "critic), or critic-free: grpo (group-normalised), rloo (leave-one-out baseline), reinforce_pp (REINFORCE++); "
        "without a critic the learner holds no value model. grpo and rloo need rollout.n_samples >= 2.")
    policy_loss: Literal["ppo_clip"] = Field("ppo_clip", description="Policy loss, by its name in "
                                             "rlhf_ray.algorithms.POLICY_LOSSES (clip, clip_high, dual_clip apply).")
    gamma: float = Field(1.0, ge=0, le=1, description="GAE discount (MOSS, TRL: 1).")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda (MOSS, TRL: 0.95).")
    clip: float = Field(0.2, gt=0, description="Policy ratio clip (lower side, and upper unless clip_high is set).")
    clip_high: float | None = Field(None, gt=0, description="Upper ratio clip if different from clip (None: symmetric).")
    dual_clip: float | None = Field(None, gt=1, description="Dual-clip constant c > 1 for negative advantages (None: off).")
    value_clip: float | None = Field(0.2, gt=0, description="Value-loss clip around old values (None: unclipped).")
    loss_agg: Literal["token_mean", "seq_mean_token_mean"] = Field("token_mean", description="How token losses are averaged.")
    kl_estimator: Literal["k1", "k2", "k3"] = Field("k1", description="Per-token KL estimator in the reward, by its "
                                                    "name in rlhf_ray.algorithms.KL_ESTIMATORS.")
    kl_controller: Literal["fixed", "adaptive"] = Field("fixed", description="Fixed coefficient or Ziegler adaptive control.")
    kl_coef: float = Field(0.01, ge=0, description="KL weight beta (MOSS: 0.01; initial value when adaptive).")
    kl_target: float = Field(6.0, gt=0, description="Adaptive controller target KL (TRL: 6).")
    kl_horizon: int = Field(10000, ge=1, description="Adaptive controller horizon in samples (TRL: 10000).")
    reward_norm: Literal["none", "scale", "norm"] = Field(
        "scale", description="RM score -> reward: none | scale (÷ running std, MOSS use_reward_scaling) | norm (standardise)."
    )
    reward_clip: float | None = Field(None, gt=0, description="Clip the normalised score to ±this (None: off; MetaRM runs: 0.8).")
    whiten_advantages: bool | None = Field(
        None, description="Whiten advantages over the batch before the policy loss (None: the estimator's default: "
        "gae and reinforce_pp yes, grpo and rloo no, their advantages being normalised per prompt already).")
    old_logprobs: Literal["learner", "rollout"] = Field(
        "learner", description="The policy log-probs of the sampled tokens (the PPO ratio's denominator, the KL "
        "penalty's policy term): learner = a forward of the current policy in the experience phase (the learner's own "
        "numerics); rollout = the engine's, returned with the samples, as TRL takes them from generation: one forward "
        "less; equal in fp32, off by the engine's rounding with a bf16 engine.")
    iterations: int = Field(10, ge=1, description="PPO iterations (rollout, score, learn, sync) to run; per round "
                            "with online.rounds > 1 (the run has rounds x iterations, numbered 1.. across rounds).")
    prompts_per_iteration: int = Field(8, ge=1, description="Prompts per iteration; each gets rollout.n_samples responses.")
    prompt_pool: int | None = Field(
        None, ge=1, description="Cycle through the first N prompts of the run's seeded prompt order (None: every RL "
        "prompt). A pool that a quarter of the iterations covers exactly puts the same prompts in the first and the "
        "last quarter, so the reward-rise test pairs them and prompt difficulty cancels.")


class ResourceSpec(Section):
    """What one actor asks Ray for; a GPU cluster sets num_gpus: 1."""

    num_cpus: float = Field(1.0, ge=0, description="CPUs per actor.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor (fractions share a GPU).")
    memory_gib: float | None = Field(None, gt=0, description="Memory reserved per actor in GiB (None: no reservation).")
    threads: int | None = Field(
        None, ge=1, description="CPU threads of torch in the actor (OMP_NUM_THREADS; None: Ray's default, its whole CPUs, at least 1)."
    )
    placement: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="Ray placement-group strategy of the role's bundles: STRICT_PACK keeps a learner group on one node, "
        "SPREAD puts rollout actors on as many nodes as it can."
    )
    custom: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources every bundle asks for, e.g. {rollout_node: 1} to put the role "
        "on nodes started with `ray start --resources '{\"rollout_node\": 8}'`."
    )


class ClusterConfig(Section):
    address: str | None = Field(None, description="Ray cluster address (e.g. ray://head:10001 or auto); None starts a local Ray.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray (None: Ray counts them). Ignored with an address.")
    colocate: bool = Field(False, description="Pack rollout and reward actors onto shared placement-group bundles.")
    placement_timeout_s: float = Field(120.0, gt=0, description="Give up (with the cluster's resources in the error) if actors cannot be placed in this time.")


class RolloutConfig(Section):
    """Sampling defaults from MOSS config_ppo.py (ALGORITHMS.md §1.4): temperature 0.8, top-p 0.9, repetition penalty 1.1."""

    engine: Literal["vllm", "hf"] = Field("vllm", description="vllm, or hf (transformers generate) where vLLM is absent; the fallback is announced in the log.")
    num_actors: int = Field(1, ge=1, description="Number of RolloutActors.")
    resources: ResourceSpec = Field(default_factory=ResourceSpec, description="Per RolloutActor.")
    n_samples: int = Field(4, ge=1, description="Responses sampled per prompt (P2: 4 per query).")
    max_new_tokens: int = Field(128, ge=1, description="Max response tokens (P2: 512).")
    temperature: float = Field(0.8, ge=0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(-1, ge=-1, description="Top-k sampling (-1: off).")
    repetition_penalty: float = Field(1.1, gt=0, description="vLLM/HF repetition penalty (MOSS: 1.1).")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "float32", description="Weight dtype of the rollout engine; auto: bfloat16 where the node computes bf16 natively, "
        "float32 elsewhere (the rule of model.mixed_precision). float32 by default: the learner sends fp32 weights."
    )
    max_model_len: int = Field(1024, ge=16, description="vLLM context length (prompt + response).")
    kv_cache_gib: float = Field(1.0, gt=0, description="vLLM CPU KV-cache size in GiB (VLLM_CPU_KVCACHE_SPACE).")
    one_step_off_policy: bool = Field(
        False, description="Generate iteration k+1's responses while the learner runs iteration k's PPO epochs, with "
        "the policy from before that update; the PPO ratio then divides by the rollout engine's log-probs (the policy "
        "that sampled them). Pays where rollout and learner have their own devices; off: on-policy, one phase at a time."
    )


class ServeRMConfig(Section):
    """A reward model as a Ray Serve deployment (`rlhf-ray serve rm`, and reward.remote: serve)."""

    app: str = Field("rm", description="Serve application name; HTTP clients POST to /<app>.")
    replicas: int = Field(1, ge=1, description="Serve replicas of the RM, each a full copy.")
    resources: ResourceSpec = Field(default_factory=ResourceSpec, description="Per replica (placement and custom ignored).")
    max_batch_size: int = Field(16, ge=1, description="Most sequences one forward pass gathers from concurrent requests.")
    batch_wait_s: float = Field(0.01, ge=0, description="Longest wait for a batch to fill before it runs.")
    max_ongoing_requests: int = Field(256, ge=1, description="Requests one replica holds at once (queued for batches).")
    host: str = Field("127.0.0.1", description="HTTP bind address; 0.0.0.0 opens the RM to the network.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of Serve's proxy.")


class RewardActorsConfig(Section):
    num_actors: int = Field(1, ge=1, description="Number of RewardActors sharing the scoring load.")
    remote: Literal["local", "serve"] = Field(
        "local", description="local: each RewardActor holds the RM; serve: RewardActors forward to the Serve app "
        "reward.serve.app (deployed from model.reward when the cluster has none)."
    )
    serve: ServeRMConfig = Field(default_factory=ServeRMConfig)
    resources: ResourceSpec = Field(default_factory=ResourceSpec, description="Per RewardActor.")
    batch_size: int = Field(16, ge=1, description="Sequences per RM forward pass.")
    function: str | None = Field(
        None, description="'module:callable' programmatic reward f(prompt_ids, response_ids, **function_kwargs) -> float, used instead of model.reward."
    )
    function_kwargs: dict = Field(default_factory=dict, description="Keyword arguments of the reward function.")
    non_finite: Literal["error", "skip"] = Field(
        "error", description="A NaN or infinite reward: error stops the run naming its source; skip drops every sample "
        "of that prompt from the iteration (its group stays whole for group estimators), counted in the metric "
        "reward/non_finite_skipped.")


class LearnerConfig(Section):
    """The DeepSpeed learner group; learning rates from MOSS train_ppo_en.sh (actor 5e-7, critic 1.5e-6)."""

    world_size: int = Field(1, ge=1, description="Learner ranks (Ray actors forming one DeepSpeed job).")
    resources: ResourceSpec = Field(default_factory=ResourceSpec, description="Per learner rank.")
    zero_stage: int = Field(2, ge=0, le=3, description="DeepSpeed ZeRO stage 0-3.")
    actor_lr: float = Field(5e-7, gt=0, description="Policy AdamW learning rate (MOSS).")
    critic_lr: float = Field(1.5e-6, gt=0, description="Critic AdamW learning rate (MOSS).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    ppo_epochs: int = Field(1, ge=1, description="Passes over the replay buffer per PPO iteration.")
    micro_batch_size: int = Field(4, ge=1, description="Sequences per rank per optimizer step.")
    padding_free: bool = Field(
        False, description="PPO updates run each step's sequences through forward and backward one at a time, cut to "
        "their own length, and accumulate the gradients: the same gradient as the padded micro-batch, without the "
        "FLOPs of its padding (a third of the learn tokens on the quickstart). Measured on 2 AVX2 cores: learn about "
        "equal (one row's smaller matmuls run slower), so off by default; it lets large micro-batches cost no padding.")
    entropy_coef: float = Field(0.0, ge=0, description="Entropy bonus weight (MOSS: off by default).")
    grad_clip: float | None = Field(1.0, gt=0, description="Max gradient norm (None: off).")


class SyncConfig(Section):
    transport: Literal["object_store", "collective"] = Field(
        "object_store", description="object_store: one safetensors blob via ray.put; collective: bucketed broadcast "
        "from learner rank 0 to every vLLM worker (gloo on CPU, NCCL on GPU)."
    )
    bucket_mb: int = Field(64, ge=1, description="Collective transport: max MiB per broadcast bucket.")


class FaultConfig(Section):
    """Actors lost during a run: rollout and reward actors are restarted on their bundle and their share redone; a
    lost learner rank stops the run, or with auto_resume the run resumes itself from its last checkpoint."""

    max_actor_restarts: int = Field(3, ge=0, description="Rollout/reward actor restarts a run may make in all; one more "
                                    "failure stops it (0: the first failure stops it).")
    rollout_timeout_s: float | None = Field(None, gt=0, description="A RolloutActor with no result this long into a "
                                            "rollout is taken as hung and restarted (None: wait as long as it runs).")
    score_timeout_s: float | None = Field(None, gt=0, description="The same for a RewardActor's scoring.")
    auto_resume: int = Field(0, ge=0, description="Times a run that lost an actor it cannot restart in-run (a learner "
                             "rank, or any actor once max_actor_restarts are used) rebuilds every actor group and "
                             "resumes from its last checkpoint by itself, as --resume would (0: it stops and says so).")


class Config(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    rm: RMConfig = Field(default_factory=RMConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    strength: StrengthConfig = Field(default_factory=StrengthConfig)
    metarm: MetaRMConfig = Field(default_factory=MetaRMConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    online: OnlineConfig = Field(default_factory=OnlineConfig)
    seam: SeamConfig = Field(default_factory=SeamConfig)
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    reward: RewardActorsConfig = Field(default_factory=RewardActorsConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    fault: FaultConfig = Field(default_factory=FaultConfig)

    @model_validator(mode="after")
    def _consistent(self) -> "Config":
        if self.rm.batch_size % self.rm.micro_batch_size:
            raise ValueError(
                f"rm.batch_size ({self.rm.batch_size}) must be a multiple of rm.micro_batch_size ({self.rm.micro_batch_size})"
            )
        if (self.rm.flip or self.rm.soft_label or self.rm.adaptive_margin) and not self.rm.strength_file:
            raise ValueError("rm.flip, rm.soft_label and rm.adaptive_margin need rm.strength_file (run `rlhf-ray rm strength` first)")
        if self.model.max_response_len >= self.model.max_len:
            raise ValueError(f"model.max_response_len ({self.model.max_response_len}) must be < model.max_len ({self.model.max_len})")
        if self.ppo.advantage_estimator in ("grpo", "rloo") and self.rollout.n_samples < 2:
            raise ValueError(f"ppo.advantage_estimator={self.ppo.advantage_estimator} compares the samples of one prompt: "
                             f"it needs rollout.n_samples >= 2 (got {self.rollout.n_samples})")
        if self.online.rounds > 1 and self.online.rm_update != "frozen" and self.reward.function:
            raise ValueError(f"online.rm_update={self.online.rm_update} updates a reward model, but reward.function "
                             f"({self.reward.function}) scores instead of one: use online.rm_update=frozen")
        if self.data.prompt_paths and self.seam.filter != "none":
            raise ValueError(f"seam.filter={self.seam.filter} scores each RL prompt against its gold answer, and the "
                             "prompts of data.prompt_paths have none: use seam.filter=none or a preference set")
        if self.reward.remote == "serve" and self.reward.function:
            raise ValueError(f"reward.remote=serve serves a reward model, but reward.function ({self.reward.function}) "
                             "scores instead of one: use reward.remote=local")
        if self.reward.remote == "serve" and self.online.rounds > 1 and self.online.rm_update != "frozen":
            raise ValueError(f"online.rm_update={self.online.rm_update} pushes new RM weights every round, which a Serve "
                             "app's replicas cannot take in place: use reward.remote=local or online.rm_update=frozen")
        return self

    @property
    def total_iterations(self) -> int:
        """PPO iterations of the whole run: ppo.iterations in each of online.rounds."""
        return self.online.rounds * self.ppo.iterations
